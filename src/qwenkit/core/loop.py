"""The one training loop every qwenkit trainer reuses: a domain supplies ``step_fn(model, batch) -> (loss, metrics)``.

The loop owns what is the same everywhere: devices and data parallelism (through ``accelerate``: run the same script
under ``accelerate launch`` or ``torchrun`` for DDP on many processes, GPUs or nodes), gradient accumulation, gradient
clipping, the learning-rate schedule, evaluation hooks, metrics, progress and exact checkpoint/resume.

Data parallelism: ``data`` yields *global* micro-batches; each process takes its contiguous slice along the first
dimension (``shard_batch``) and DDP averages gradients. A ``step_fn`` that returns the mean loss over its slice
therefore trains exactly as one process on the global batch. Losses whose normaliser spans the whole batch (e.g. a
token-mean over all processes) reduce their denominators themselves with ``global_sum``.

Exact resume: a checkpoint holds model, optimizer, scheduler, every RNG, the step, and the state of any ``stateful``
objects the domain passes (EMA weights, replay buffers). Data given as a callable ``data(micro_step_index)`` is
re-addressed directly; an iterable is fast-forwarded past the micro-batches already consumed. On CPU a killed and
resumed run reaches bit-identical weights to one that was never killed (tests/core/test_loop.py).

Manual backward (``manual_backward=True``): for steps that need several backward passes per micro-batch (GradCache,
for example), the loop calls ``step_fn(model, batch, backward)``. ``backward(tensor, sync=True)`` scales by
``1/grad_accum_steps`` and runs ``accelerator.backward``; pass ``sync=False`` for every backward but the last of a
micro-batch so DDP all-reduces gradients once. The returned loss is then only logged.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from pydantic import Field

from qwenkit.core.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    remove_leftovers,
    save_checkpoint,
)
from qwenkit.core.config import StrictModel
from qwenkit.core.errors import ResumeError
from qwenkit.core.progress import ProgressBar
from qwenkit.core.runs import RunDir
from qwenkit.core.seeding import capture_rng_state, restore_rng_state, seed_everything

StepFn = Callable[..., tuple[torch.Tensor, Mapping[str, Any]]]
EvalFn = Callable[[torch.nn.Module], Mapping[str, float]]


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TrainConfig(StrictModel):
    """Settings of the shared loop; domains embed it as ``trainer:`` in their YAML configs."""

    max_steps: int = Field(100, ge=1, description="optimizer steps to run")
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = Field(1e-8, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the global gradient norm; null disables")
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr as a fraction of lr (linear/cosine)")
    eval_every: int = Field(0, ge=0, description="evaluate every N steps (and at the end); 0 = only at the end")
    checkpoint_every: int = Field(0, ge=0, description="checkpoint every N steps (and at the end); 0 = only at the end")
    keep_last: int = Field(2, ge=1, description="checkpoints kept; older ones are deleted once a new one is verified")
    log_every: int = Field(1, ge=1)
    seed: int = 0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` at optimizer step ``step`` (0-based): linear warm-up, then constant/linear/cosine."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.min_lr_ratio
    if config.lr_schedule == "linear":
        return floor + (1 - floor) * (1 - progress)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class LoopResult:
    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    eval_history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None


@dataclass
class LoopState:
    """What callbacks see after each optimizer step."""

    step: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    metrics: dict[str, float]
    accelerator: Any


def shard_batch(batch: Any, rank: int, world_size: int) -> Any:
    """This process's contiguous slice of a global batch (tensors, lists and tuples split along the first dim)."""
    if world_size == 1:
        return batch
    if isinstance(batch, Mapping):
        return {k: shard_batch(v, rank, world_size) for k, v in batch.items()}
    if isinstance(batch, torch.Tensor | list) and not (isinstance(batch, torch.Tensor) and batch.dim() == 0):
        size = len(batch)
        if size % world_size:
            raise ValueError(
                f"a global batch of {size} cannot be split evenly over {world_size} processes; "
                f"use a batch size divisible by {world_size}"
            )
        per = size // world_size
        return batch[rank * per : (rank + 1) * per]
    if isinstance(batch, tuple):
        return tuple(shard_batch(v, rank, world_size) for v in batch)
    return batch


def global_sum(value: torch.Tensor | float) -> torch.Tensor:
    """Sum a number over all processes (identity without torch.distributed); for batch-wide loss denominators."""
    tensor = torch.as_tensor(value, dtype=torch.float64).clone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return tensor


def train_loop(
    model: torch.nn.Module,
    step_fn: StepFn,
    data: Callable[[int], Any] | Iterable[Any],
    config: TrainConfig,
    *,
    run: RunDir | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    eval_fn: EvalFn | None = None,
    resume: bool | str | Path | None = False,
    callbacks: Sequence[Callable[[LoopState], None]] = (),
    stateful: Mapping[str, Stateful] | None = None,
    description: str = "training",
    quiet: bool | None = None,
    manual_backward: bool = False,
) -> LoopResult:
    """Train ``model`` for ``config.max_steps`` optimizer steps and return the logged history.

    ``resume=True`` or ``"auto"`` continues from the run's latest checkpoint when there is one (a corrupt one raises
    :class:`~qwenkit.core.checkpoint.CheckpointError`), ``"must"`` raises :class:`~qwenkit.core.errors.ResumeError`
    when there is none, and a path resumes from that checkpoint, which must exist. Without resume, a run directory
    that already holds a checkpoint is refused. Leftovers of a killed run (half-written checkpoints) are removed.
    """
    from accelerate import Accelerator

    stateful = dict(stateful or {})
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=not torch.cuda.is_available())
    if optimizer is None:
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=config.lr,
            betas=config.adam_betas,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))

    start_step = 0
    checkpoint = _find_resume_checkpoint(resume, run)
    if checkpoint is not None:
        model.load_state_dict(checkpoint.model)
        if checkpoint.optimizer is None:
            raise CheckpointError(f"checkpoint {checkpoint.path} holds no optimizer state; it cannot resume training")
        optimizer.load_state_dict(checkpoint.optimizer)
        scheduler.load_state_dict(checkpoint.state["scheduler"])
        for name, obj in stateful.items():
            if name not in checkpoint.state.get("stateful", {}):
                raise CheckpointError(f"checkpoint {checkpoint.path} has no state for {name!r}; it was written by "
                                      "another kind of run")
            obj.load_state_dict(checkpoint.state["stateful"][name])
        restore_rng_state(checkpoint.state["rng"])
        start_step = checkpoint.step
        if run is not None and accelerator.is_main_process:
            run.truncate_metrics(start_step)
    else:
        if run is not None and accelerator.is_main_process:
            existing = latest_checkpoint(run.checkpoints_dir)
            if existing is not None:
                raise ResumeError(
                    f"{run.path} already holds a run (checkpoint {existing.name}); pass --resume to continue it, or "
                    "use a new output directory"
                )
            run.truncate_metrics(0)
        seed_everything(config.seed)

    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    batches = _BatchSource(data, start_step * config.grad_accum_steps)
    result = LoopResult(step=start_step, resumed_from=checkpoint.step if checkpoint else None)
    params = [p for p in model.parameters() if p.requires_grad]

    with ProgressBar(config.max_steps, description, quiet=True if not accelerator.is_main_process else quiet) as bar:
        bar.update(start_step)
        for step in range(start_step, config.max_steps):
            started = time.perf_counter()
            micro_metrics: list[Mapping[str, Any]] = []
            total_loss = 0.0
            for micro in range(config.grad_accum_steps):
                batch = shard_batch(batches.next(), accelerator.process_index, accelerator.num_processes)
                batch = _to_device(batch, accelerator.device)
                sync = micro == config.grad_accum_steps - 1
                if manual_backward:
                    backward = _ManualBackward(accelerator, model, config.grad_accum_steps, last_micro=sync)
                    with accelerator.autocast():
                        loss, metrics = step_fn(model, batch, backward)
                    if not backward.called:
                        raise RuntimeError("manual_backward=True but the step function never called backward(...)")
                else:
                    with contextlib.nullcontext() if sync else accelerator.no_sync(model), accelerator.autocast():
                        loss, metrics = step_fn(model, batch)
                        accelerator.backward(loss / config.grad_accum_steps)
                total_loss += float(loss.detach()) / config.grad_accum_steps
                micro_metrics.append(metrics)
            grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm or float("inf"))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            logged = _average(micro_metrics)
            logged.update(loss=total_loss, lr=lr, grad_norm=float(grad_norm), step_time_s=time.perf_counter() - started)
            logged = _mean_over_processes(logged, accelerator)
            done = step + 1
            result.step = done
            if done % config.log_every == 0 or done == config.max_steps:
                result.history.append({"step": done, **logged})
                if run is not None and accelerator.is_main_process:
                    run.log(done, logged)
            for callback in callbacks:
                callback(LoopState(done, model, optimizer, logged, accelerator))
            if eval_fn is not None and (
                done == config.max_steps or (config.eval_every and done % config.eval_every == 0)
            ):
                evaluated = _evaluate(model, eval_fn)
                result.eval_history.append({"step": done, **evaluated})
                if run is not None and accelerator.is_main_process:
                    run.log(done, evaluated)
            if run is not None and (
                done == config.max_steps or (config.checkpoint_every and done % config.checkpoint_every == 0)
            ):
                _save(run, done, accelerator, model, optimizer, scheduler, stateful, config.keep_last)
            bar.update(1, loss=total_loss)
    return result


def _find_resume_checkpoint(resume: bool | str | Path | None, run: RunDir | None):
    if run is not None:
        remove_leftovers(run.checkpoints_dir)
    if resume is False or resume is None:
        return None
    if resume is True or resume in ("auto", "must"):
        if run is None:
            raise ValueError("resume needs a run directory (run=RunDir(...)) to look for checkpoints in")
        latest = latest_checkpoint(run.checkpoints_dir)
        if latest is None and resume == "must":
            raise ResumeError(f"--resume=must: {run.checkpoints_dir} holds no checkpoint to resume from")
        return None if latest is None else load_checkpoint(latest)
    return load_checkpoint(resume)


def _save(run, step, accelerator, model, optimizer, scheduler, stateful, keep) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {
            "scheduler": scheduler.state_dict(),
            "rng": capture_rng_state(),
            "stateful": {name: obj.state_dict() for name, obj in stateful.items()},
        }
        save_checkpoint(run.checkpoints_dir, step, accelerator.unwrap_model(model).state_dict(), state,
                        optimizer_state=optimizer.state_dict(), keep=keep)
    accelerator.wait_for_everyone()


def _evaluate(model: torch.nn.Module, eval_fn: EvalFn) -> dict[str, float]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            metrics = eval_fn(model)
    finally:
        model.train(was_training)
    return {f"eval/{k}": float(v) for k, v in metrics.items()}


class _ManualBackward:
    """The ``backward`` handed to a manual-backward step: scaled for accumulation, synchronised only when asked."""

    def __init__(self, accelerator, model: torch.nn.Module, accumulation: int, *, last_micro: bool):
        self.accelerator, self.model, self.accumulation, self.last_micro = accelerator, model, accumulation, last_micro
        self.called = False

    def __call__(self, tensor: torch.Tensor, sync: bool = True) -> None:
        self.called = True
        context = contextlib.nullcontext() if (sync and self.last_micro) else self.accelerator.no_sync(self.model)
        with context:
            self.accelerator.backward(tensor / self.accumulation)


class _BatchSource:
    """Hands out micro-batches by global index, from a callable or by fast-forwarding an iterable."""

    def __init__(self, data: Callable[[int], Any] | Iterable[Any], start_index: int):
        self.index = start_index
        self._call = data if callable(data) and not hasattr(data, "__iter__") else None
        self._iter: Iterator[Any] | None = None
        if self._call is None:
            self._iter = iter(data)  # type: ignore[arg-type]
            for _ in range(start_index):
                self._next_from_iter()

    def _next_from_iter(self) -> Any:
        try:
            return next(self._iter)  # type: ignore[arg-type]
        except StopIteration:
            raise ValueError(
                f"the data ran out after {self.index} micro-batches; give more data, fewer steps, "
                "or a callable data(index) that never ends"
            ) from None

    def next(self) -> Any:
        batch = self._call(self.index) if self._call is not None else self._next_from_iter()
        self.index += 1
        return batch


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _average(metrics: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean of each metric over the micro-batches that reported it (a metric absent from some is not diluted)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for m in metrics:
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + float(v)
            counts[k] = counts.get(k, 0) + 1
    return {k: v / counts[k] for k, v in sums.items()}


def _mean_over_processes(metrics: dict[str, float], accelerator) -> dict[str, float]:
    if accelerator.num_processes == 1:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    values = accelerator.reduce(values, reduction="mean")
    return dict(zip(keys, values.tolist(), strict=True))
