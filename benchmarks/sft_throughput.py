"""SFT training throughput (tokens/s): qwenkit.sft through core.loop against TRL's ``SFTTrainer``, side by side.

Same tiny Qwen3 (``small``: 4 layers, hidden 128, same seed), same pre-tokenized rationale examples of the toy
arithmetic task with the loss on target tokens only (TRL gets ``input_ids`` + ``labels`` columns, so it trains on
exactly our masking), same batch size (one epoch: every example once), optimizer steps, AdamW, learning rate,
cosine schedule, fp32, one torch thread, no checkpoints; the packed arm runs one epoch of its packed rows. Arms
alternate over ``--rounds`` rounds; the median per arm is reported. Tokens are the real (non-padding) tokens of the
examples consumed; qwenkit's packed arm also counts real tokens only.

usage: python benchmarks/sft_throughput.py [--steps 30] [--batch 16] [--rounds 3]
Writes benchmarks/results/sft_throughput.json and .md (with the load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _setup(batch: int, steps: int):
    from qwenkit.lm.tokenizer import build_synthetic_tokenizer
    from qwenkit.sft.data import tokenize_records
    from qwenkit.sft.tasks import make_task

    tokenizer = build_synthetic_tokenizer()
    records = make_task("arithmetic", batch * steps, seed=0, steps=3, modulus=10)
    examples, _ = tokenize_records(records, tokenizer, "rationale", 512)
    return tokenizer, examples


def _model(tokenizer):
    from qwenkit.lm.models import tiny_qwen3_for

    return tiny_qwen3_for(tokenizer, "small", seed=0)


def run_qwenkit(tokenizer, examples, batch: int, steps: int, lr: float, packing: bool) -> dict:
    from qwenkit.core.loop import TrainConfig, train_loop
    from qwenkit.sft.train import BatchSource, sft_step

    model = _model(tokenizer)
    source = BatchSource(examples, batch_size=batch, seed=0, packing=packing, max_length=512,
                         pad_id=tokenizer.pad_token_id)
    if packing:
        # one epoch, as the padded arms: every example once, in fewer (fuller) rows
        steps = source.batches_per_epoch
    tokens = sum(source.real_tokens(i) for i in range(steps))
    config = TrainConfig(max_steps=steps, lr=lr, lr_schedule="cosine", max_grad_norm=1.0, seed=0)
    started = time.perf_counter()
    result = train_loop(model, sft_step, source, config, quiet=True)
    seconds = time.perf_counter() - started
    mean_loss = sum(h["loss"] for h in result.history) / len(result.history)
    return {"seconds": seconds, "tokens": tokens, "mean_loss": mean_loss}


def run_trl(tokenizer, examples, batch: int, steps: int, lr: float) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model = _model(tokenizer)
    dataset = Dataset.from_dict({"input_ids": [e.input_ids for e in examples],
                                 "labels": [e.labels for e in examples]})
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=lr,
                         lr_scheduler_type="cosine", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                         logging_steps=steps, save_strategy="no", report_to=[], use_cpu=True, seed=0,
                         dataloader_num_workers=0, disable_tqdm=True, max_length=None, bf16=False, fp16=False)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
    # batch * steps examples and max_steps = steps: exactly one epoch, every example once
    return {"seconds": seconds, "tokens": sum(len(e.input_ids) for e in examples), "mean_loss": output.training_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    tokenizer, examples = _setup(args.batch, args.steps)
    arms = {"qwenkit": [], "qwenkit packed": [], "trl SFTTrainer": []}
    for _ in range(args.rounds):
        arms["trl SFTTrainer"].append(run_trl(tokenizer, examples, args.batch, args.steps, args.lr))
        arms["qwenkit"].append(run_qwenkit(tokenizer, examples, args.batch, args.steps, args.lr, packing=False))
        arms["qwenkit packed"].append(run_qwenkit(tokenizer, examples, args.batch, args.steps, args.lr,
                                                  packing=True))
    load_after = os.getloadavg()
    rows = []
    for name, runs in arms.items():
        rates = [r["tokens"] / r["seconds"] for r in runs]
        rows.append({"arm": name, "tokens_per_s": statistics.median(rates), "runs_tokens_per_s": rates,
                     "tokens_per_run": runs[0]["tokens"], "seconds_median": statistics.median(r["seconds"]
                                                                                             for r in runs),
                     "mean_loss": runs[0]["mean_loss"]})
    trl_rate = rows[2]["tokens_per_s"]
    for row in rows:
        row["ratio_vs_trl"] = row["tokens_per_s"] / trl_rate
    result = {"settings": vars(args) | {"model": "tiny-qwen3 small", "threads": 1, "task": "arithmetic 3 steps mod 10",
                                        "target": "rationale"},
              "load_average_before": load_before, "load_average_after": load_after, "arms": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sft_throughput.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    lines = ["# SFT throughput: qwenkit.sft vs TRL SFTTrainer", "",
             f"{args.steps} optimizer steps of batch {args.batch}, tiny Qwen3 `small`, one torch thread, median of "
             f"{args.rounds} alternating rounds. Load average before {load_before[0]:.2f}, after {load_after[0]:.2f}.",
             "", "| arm | tokens/s | ratio vs TRL | real tokens per run | seconds (median) | mean training loss |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['arm']} | {row['tokens_per_s']:.0f} | {row['ratio_vs_trl']:.2f} | "
                     f"{row['tokens_per_run']} | {row['seconds_median']:.2f} | {row['mean_loss']:.4f} |")
    lines += ["", "`qwenkit packed` packs the same examples into rows of 512 tokens (block-diagonal masks) and runs "
              "one epoch of those rows (fewer, fuller steps), so every arm trains on the same examples once; tokens/s "
              "counts real (non-padding) tokens only."]
    (RESULTS / "sft_throughput.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
