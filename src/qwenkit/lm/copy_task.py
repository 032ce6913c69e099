"""The smoke reproduction: a tiny Qwen3 learns to copy a digit string, end to end through qwenkit's stack.

It exercises every shared layer at once: the synthetic tokenizer and tiny model (``qwenkit.lm``), the chunked
log-probabilities as the training loss, the shared training loop with checkpoints and metrics (``qwenkit.core``),
the batched sampler for evaluation, and a report with curves.

Task: prompt ``"<digits>="`` -> completion ``"<digits>"`` followed by ``<|im_end|>``; metric: exact-match accuracy of
greedy decoding on held-out strings.
"""

from __future__ import annotations

import time

import torch
from pydantic import Field

from qwenkit.core.config import StrictModel
from qwenkit.core.loop import TrainConfig, train_loop
from qwenkit.core.runs import RunDir
from qwenkit.lm.logprobs import token_logprobs
from qwenkit.lm.models import count_parameters, tiny_qwen3_for
from qwenkit.lm.sampling import SamplingParams, left_pad, sample
from qwenkit.lm.tokenizer import build_synthetic_tokenizer

ALPHABET = "0123456789="


class CopyTaskConfig(StrictModel):
    model_size: str = "tiny"
    moe: bool = False
    min_digits: int = Field(2, ge=1)
    max_digits: int = Field(6, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_examples: int = Field(64, ge=1)
    trainer: TrainConfig = TrainConfig(max_steps=300, lr=3e-3, warmup_steps=10, lr_schedule="cosine", eval_every=50)


def make_example(generator: torch.Generator, config: CopyTaskConfig) -> str:
    length = int(torch.randint(config.min_digits, config.max_digits + 1, (1,), generator=generator))
    return "".join(str(int(d)) for d in torch.randint(0, 10, (length,), generator=generator))


def make_batch(index: int, tokenizer, config: CopyTaskConfig) -> dict[str, torch.Tensor]:
    """Micro-batch ``index``: a pure function of the index, so resumed runs see the same data."""
    generator = torch.Generator().manual_seed(10_000 + index)
    sequences, completion_lengths = [], []
    for _ in range(config.batch_size):
        digits = make_example(generator, config)
        prompt = tokenizer(digits + "=")["input_ids"]
        completion = tokenizer(digits)["input_ids"] + [tokenizer.eos_token_id]
        sequences.append(prompt + completion)
        completion_lengths.append(len(completion))
    ids, mask = left_pad(sequences, tokenizer.pad_token_id)
    completion_mask = torch.zeros_like(mask)
    for row, length in enumerate(completion_lengths):
        completion_mask[row, -length:] = 1
    return {"input_ids": ids, "attention_mask": mask, "completion_mask": completion_mask}


def sft_step(model, batch):
    """Next-token cross-entropy on the completion tokens: ``-sum(logp * m) / sum(m)``."""
    scores = token_logprobs(model, batch["input_ids"], batch["attention_mask"],
                            completion_mask=batch["completion_mask"])
    mask = scores.mask.float()
    loss = -(scores.logprobs * mask).sum() / mask.sum().clamp(min=1)
    if scores.aux_loss is not None:
        loss = loss + scores.aux_loss
    return loss, {"nll": loss.detach()}


def copy_accuracy(model, tokenizer, config: CopyTaskConfig, seed: int = 999) -> float:
    generator = torch.Generator().manual_seed(seed)
    targets = [make_example(generator, config) for _ in range(config.eval_examples)]
    params = SamplingParams(max_new_tokens=config.max_digits + 1, temperature=0)
    outputs = sample(model, tokenizer, [t + "=" for t in targets], params)
    return sum(out == target for out, target in zip(outputs.texts, targets, strict=True)) / len(targets)


def train_copy_task(config: CopyTaskConfig, run: RunDir, *, resume: bool = False, quiet: bool | None = None):
    tokenizer = build_synthetic_tokenizer(ALPHABET)
    torch.manual_seed(config.trainer.seed)
    model = tiny_qwen3_for(tokenizer, config.model_size, moe=config.moe, seed=config.trainer.seed)
    run.save_config(config)
    result = train_loop(
        model,
        sft_step,
        lambda index: make_batch(index, tokenizer, config),
        config.trainer,
        run=run,
        eval_fn=lambda m: {"exact_match": copy_accuracy(m, tokenizer, config)},
        resume=resume,
        description="copy task",
        quiet=quiet,
    )
    return model, tokenizer, result


def run_smoke(ctx) -> str:
    """Quick: 300 steps (about half a minute on 2 cores); full: 1,500 steps of the small model."""
    from qwenkit.core.plots import line_plot
    from qwenkit.core.report import Report

    config = CopyTaskConfig()
    if ctx.full:
        config = CopyTaskConfig(model_size="small", trainer=config.trainer.model_copy(update={"max_steps": 1500}))
    config.trainer.seed = ctx.seed
    started = time.perf_counter()
    model, tokenizer, result = train_copy_task(config, ctx.run)
    seconds = time.perf_counter() - started
    steps, losses = ctx.run.series("loss")
    eval_steps, accuracy = ctx.run.series("eval/exact_match")
    loss_png = line_plot(ctx.run.plot_path("loss"), {"train NLL": (steps, losses)}, ylabel="NLL / token", logy=True,
                         title="copy task: training loss")
    acc_png = line_plot(ctx.run.plot_path("accuracy"), {"greedy exact match": (eval_steps, accuracy)},
                        ylabel="exact match", title="copy task: held-out accuracy")
    final = accuracy[-1] if accuracy else float("nan")
    generator = torch.Generator().manual_seed(7)
    examples = [make_example(generator, config) for _ in range(5)]
    outputs = sample(model, tokenizer, [e + "=" for e in examples], SamplingParams(max_new_tokens=8, temperature=0))
    report = Report("Smoke: a tiny Qwen3 learns to copy digits")
    report.text(
        f"A `{type(model).__name__}` with {count_parameters(model):,} parameters (size `{config.model_size}`) trained "
        f"for {result.step} steps of batch {config.batch_size} in {seconds:.0f} s through `qwenkit.core.loop` "
        "(loss from `qwenkit.lm.token_logprobs`, evaluation with `qwenkit.lm.sample`)."
    )
    report.table([{"step": s, "exact match": a} for s, a in zip(eval_steps, accuracy, strict=True)],
                 caption=f"greedy exact-match accuracy on {config.eval_examples} held-out strings")
    report.image(loss_png, "training loss").image(acc_png, "held-out accuracy")
    report.table([{"prompt": e + "=", "completion": o, "correct": o == e}
                  for e, o in zip(examples, outputs.texts, strict=True)], caption="samples")
    report.write(ctx.run.path)
    return f"copy-task exact match {final:.2f} after {result.step} steps ({seconds:.0f} s)"
