"""RL training throughput: qwenkit's trainer vs TRL's GRPOTrainer, same tiny model, task, batch and settings.

Both train a tiny Qwen3 (from the same config and seed) on the sort-3-digits task with GRPO: 16 prompts x 8 responses
per generation batch, split into 4 optimizer steps of 32 responses, at most 5 new tokens at temperature 1, AdamW lr
5e-4, no KL, no reference model. Throughput = (prompt + completion tokens of every sampled response) / wall time
of rollout + update, counted the same way for both (by the reward function, which sees every response once).

usage: python benchmarks/rl_trl_throughput.py [--rollouts 6] [--threads 1]
Writes benchmarks/results/rl_trl_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QWENKIT_QUIET", "1")

PROMPTS, GROUP, MINI_BATCHES, MAX_NEW, LR = 16, 8, 4, 5, 5e-4


class TokenCounter:
    """The sort3 exact-match reward, counting prompt + completion characters (one token each) as it scores."""

    def __init__(self):
        self.tokens = 0
        self.responses = 0

    def score(self, prompt: str, completion: str, reference: str) -> float:
        self.tokens += len(prompt) + len(completion)
        self.responses += 1
        return float(completion.strip() == reference.strip())


def run_qwenkit(rollouts: int, seed: int) -> dict:
    from qwenkit.core.config import load_config
    from qwenkit.rl.config import ALGORITHMS, RLConfig
    from qwenkit.rl.tasks import TASKS, Task, get_task
    from qwenkit.rl.train import train

    counter = TokenCounter()
    sort3 = get_task("sort3")
    TASKS["bench_sort3"] = lambda: Task("bench_sort3", sort3.draw, counter.score, MAX_NEW, "benchmark")
    config = load_config(RLConfig, {
        "task": "bench_sort3", "model": {"size": "tiny", "seed": seed}, "algorithm": ALGORITHMS["grpo"],
        "rollout": {"prompts": PROMPTS, "group_size": GROUP, "num_mini_batches": MINI_BATCHES,
                    "max_new_tokens": MAX_NEW},
        "rollouts": rollouts, "eval_prompts": 0, "trainer": {"lr": LR, "max_grad_norm": 1.0},
    })
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = train(config, Path(tmp) / "run", seed=seed, quiet=True, report=False)
        wall = time.perf_counter() - started
    loop_s = sum(h["step_time_s"] for h in result.history)
    return {"responses": counter.responses, "tokens": counter.tokens, "seconds": loop_s, "wall_with_setup_s": wall,
            "optimizer_steps": len(result.history)}


def run_trl(rollouts: int, seed: int) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from qwenkit.lm.models import tiny_qwen3_for
    from qwenkit.lm.tokenizer import build_synthetic_tokenizer
    from qwenkit.rl.tasks import draw_examples, get_task

    counter = TokenCounter()
    tokenizer = build_synthetic_tokenizer()
    model = tiny_qwen3_for(tokenizer, "tiny", seed=seed)
    examples = draw_examples(get_task("sort3"), PROMPTS * rollouts * 2, seed)
    dataset = Dataset.from_list([{"prompt": e.prompt, "reference": e.reference} for e in examples])

    def reward(prompts, completions, reference, **kwargs):
        return [counter.score(p, c, r) for p, c, r in zip(prompts, completions, reference, strict=True)]

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.started

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp, use_cpu=True, per_device_train_batch_size=PROMPTS * GROUP // MINI_BATCHES,
            gradient_accumulation_steps=1, steps_per_generation=MINI_BATCHES, num_generations=GROUP,
            max_completion_length=MAX_NEW, temperature=1.0, learning_rate=LR, lr_scheduler_type="constant",
            beta=0.0, loss_type="grpo", epsilon=0.2, epsilon_high=0.28, num_iterations=1,
            max_steps=rollouts * MINI_BATCHES, logging_steps=1000, save_strategy="no", report_to=[],
            seed=seed, disable_tqdm=True, max_grad_norm=1.0, warmup_steps=0, weight_decay=0.0,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[timer])
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
    return {"responses": counter.responses, "tokens": counter.tokens, "seconds": timer.seconds,
            "wall_with_setup_s": wall, "optimizer_steps": rollouts * MINI_BATCHES}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollouts", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import trl

    results = {}
    for name, fn in (("qwenkit", run_qwenkit), ("trl", run_trl)):
        fn(1, args.seed)  # warm-up: imports, kernel caches
        results[name] = fn(args.rollouts, args.seed)
        results[name]["tokens_per_s"] = results[name]["tokens"] / results[name]["seconds"]
        print(name, results[name])
    ratio = results["qwenkit"]["tokens_per_s"] / results["trl"]["tokens_per_s"]
    payload = {
        "benchmark": "rl_trl_throughput", "trl_version": trl.__version__, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "threads": args.threads,
        "load_average_1min": os.getloadavg()[0], "rollouts": args.rollouts,
        "settings": {"prompts": PROMPTS, "group": GROUP, "mini_batches": MINI_BATCHES, "max_new_tokens": MAX_NEW,
                     "lr": LR, "model": "tiny Qwen3 dense (hidden 64, 2 layers, vocab 103)"},
        "results": results, "speedup_vs_trl": ratio,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rl_trl_throughput.json").write_text(json.dumps(payload, indent=2))
    lines = [
        "# RL throughput: qwenkit vs TRL GRPOTrainer", "",
        f"tiny Qwen3, sort3, {PROMPTS}x{GROUP} responses per rollout, {MINI_BATCHES} mini-batches, "
        f"{args.rollouts} rollouts, {args.threads} thread(s), load average {payload['load_average_1min']:.1f}, "
        f"trl {trl.__version__}", "",
        "| trainer | responses | tokens | seconds (rollout+update) | tokens/s | ratio |", "|---|---|---|---|---|---|",
    ]
    for name in ("qwenkit", "trl"):
        r = results[name]
        lines.append(f"| {name} | {r['responses']} | {r['tokens']} | {r['seconds']:.2f} | {r['tokens_per_s']:.0f} | "
                     f"{r['tokens_per_s'] / results['trl']['tokens_per_s']:.2f}x |")
    (out / "rl_trl_throughput.md").write_text("\n".join(lines) + "\n")
    print(f"qwenkit / trl throughput: {ratio:.2f}x")


if __name__ == "__main__":
    main()
