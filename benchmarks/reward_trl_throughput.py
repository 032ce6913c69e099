"""Reward-model training throughput: qwenkit's trainer vs TRL's RewardTrainer, same model, tokens and settings.

Both train a Bradley-Terry reward model on a tiny Qwen3 (``AutoModelForSequenceClassification`` built from the same
config and seed, one label, pad id set) over the *same token ids*: the synthetic corpus rendered and tokenized by
qwenkit (empty system turn, EOS at the end) and handed to TRL as its pre-tokenized ``chosen_ids``/``rejected_ids``.
Settings: batch 16 pairs, AdamW lr 1e-3 constant, no warm-up, weight decay 0, grad-norm clip 1.0, no centring, no
margin, fp32, one process. Throughput = pairs / seconds of the timed optimizer steps (from the first step after
``--warmup`` steps to the end), plus the whole ``train()`` call with its set-up for reference.

usage: python benchmarks/reward_trl_throughput.py [--steps 60] [--warmup 5] [--size tiny] [--threads 1]
Writes benchmarks/results/reward_trl_throughput.json and .md.
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

BATCH, LR, MAX_LENGTH = 16, 1e-3, 96


def _corpus(steps: int, seed: int):
    from qwenkit.reward.synthetic import make_pairs

    per_category = (steps * BATCH) // 3 + 1
    return make_pairs(dict.fromkeys(("adversarial", "objective", "subjective"), per_category), seed=seed)


def _model(size: str, seed: int):
    from qwenkit.lm.models import tiny_qwen3_for
    from qwenkit.lm.tokenizer import build_synthetic_tokenizer
    from qwenkit.reward.model import reward_model_from_causal_lm

    tokenizer = build_synthetic_tokenizer()
    return reward_model_from_causal_lm(tiny_qwen3_for(tokenizer, size, seed=seed), tokenizer,
                                       max_length=MAX_LENGTH, seed=seed)


def run_qwenkit(pairs, size: str, steps: int, warmup: int, seed: int) -> dict:
    from qwenkit.core.loop import TrainConfig, train_loop
    from qwenkit.reward.train import PairBatches, encode_pairs, reward_step

    model = _model(size, seed)
    config = TrainConfig(max_steps=steps, lr=LR, max_grad_norm=1.0, seed=seed)
    started = time.perf_counter()
    encoded = encode_pairs(model, pairs, use_margin=False)
    result = train_loop(model, reward_step(0.0), PairBatches(encoded, BATCH, model.pad_id, seed), config, quiet=True)
    wall = time.perf_counter() - started
    timed = sum(h["step_time_s"] for h in result.history[warmup:])
    return {"timed_steps": steps - warmup, "seconds": timed, "wall_with_setup_s": wall,
            "final_loss": result.history[-1]["loss"]}


def run_trl(pairs, size: str, steps: int, warmup: int, seed: int) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from qwenkit.reward.model import encode_response

    model = _model(size, seed)
    tokenizer, fmt = model.tokenizer, model.format
    rows = [{"chosen_ids": encode_response(tokenizer, p.context, p.chosen, fmt),
             "rejected_ids": encode_response(tokenizer, p.context, p.rejected, fmt)} for p in pairs]
    dataset = Dataset.from_list(rows)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.starts, self.ends = [], []

        def on_step_begin(self, args, state, control, **kwargs):
            self.starts.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        args = RewardConfig(
            output_dir=tmp, use_cpu=True, per_device_train_batch_size=BATCH, gradient_accumulation_steps=1,
            learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
            max_steps=steps, logging_steps=10_000, save_strategy="no", report_to=[], seed=seed, disable_tqdm=True,
            dataloader_num_workers=0, max_length=MAX_LENGTH, center_rewards_coefficient=None, bf16=False,
        )
        trainer = RewardTrainer(model=model.network, args=args, train_dataset=dataset, processing_class=tokenizer,
                                callbacks=[timer])
        started = time.perf_counter()
        output = trainer.train()
        wall = time.perf_counter() - started
    # a step's time runs from the end of the previous step (its batch is fetched in between) to its own end
    timed = timer.ends[-1] - timer.ends[warmup - 1]
    return {"timed_steps": steps - warmup, "seconds": timed, "wall_with_setup_s": wall,
            "final_loss": float(output.training_loss)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import trl

    pairs = _corpus(args.steps, args.seed)
    load_before = os.getloadavg()[0]
    results = {}
    for name, fn in (("qwenkit", run_qwenkit), ("trl", run_trl)):
        fn(pairs, args.size, args.warmup + 2, args.warmup, args.seed)  # warm-up: imports, allocator
        results[name] = fn(pairs, args.size, args.steps, args.warmup, args.seed)
        results[name]["pairs_per_s"] = results[name]["timed_steps"] * BATCH / results[name]["seconds"]
        print(name, results[name], flush=True)
    ratio = results["qwenkit"]["pairs_per_s"] / results["trl"]["pairs_per_s"]
    payload = {
        "benchmark": "reward_trl_throughput", "trl_version": trl.__version__, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "threads": args.threads,
        "load_average_1min_before": load_before, "load_average_1min_after": os.getloadavg()[0],
        "settings": {"steps": args.steps, "warmup_steps": args.warmup, "batch_pairs": BATCH, "lr": LR,
                     "max_length": MAX_LENGTH, "model": f"{args.size} Qwen3 sequence classifier (synthetic vocab)"},
        "results": results, "speedup_vs_trl": ratio,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reward_trl_throughput.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Reward-model training throughput: qwenkit vs TRL RewardTrainer", "",
        f"{args.size} Qwen3 sequence classifier, the same pre-tokenized synthetic pairs, batch {BATCH} pairs, "
        f"{args.steps} steps ({args.warmup} untimed), {args.threads} thread(s), load average "
        f"{load_before:.2f} before / {payload['load_average_1min_after']:.2f} after, trl {trl.__version__}", "",
        "| trainer | timed steps | seconds | pairs/s | whole train() with set-up, s | final loss | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("qwenkit", "trl"):
        r = results[name]
        lines.append(f"| {name} | {r['timed_steps']} | {r['seconds']:.2f} | {r['pairs_per_s']:.1f} | "
                     f"{r['wall_with_setup_s']:.2f} | {r['final_loss']:.4f} | "
                     f"{r['pairs_per_s'] / results['trl']['pairs_per_s']:.2f}x |")
    (out / "reward_trl_throughput.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
