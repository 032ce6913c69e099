"""Scaling grids: BT reward models over data sizes x model sizes x seeds, each cell an independent resumable job.

Cell ``i`` of a grid is ``cells(grid)[i]`` (model size outermost, then data size, then seed), so a SLURM array or a
Ray job can run ``qwenkit reward scaling --config grid.yaml --out DIR --cell $i`` anywhere that sees ``DIR``. A cell
writes ``DIR/cells/<name>/result.json`` atomically when it finishes; a finished cell is skipped, an unfinished one
resumes from its checkpoint. ``--workers K`` runs the pending cells in K local processes. When every cell is done,
:func:`fit_grid` fits ``L(D) = a D^-alpha + c`` per category and model size, and ``L(N) = b N^-beta + c`` per
category at the largest data size every model size has (N = non-embedding parameters), each needing four points.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from qwenkit.core.config import StrictModel
from qwenkit.core.loop import TrainConfig

Category = Literal["adversarial", "objective", "subjective"]


class ScalingGrid(StrictModel):
    model_sizes: list[Literal["nano", "tiny", "small", "base"]] = Field(
        default_factory=lambda: ["nano", "tiny", "small"], min_length=1)
    data_sizes: list[int] = Field(default_factory=lambda: [96, 192, 384, 768], min_length=1,
                                  description="training pairs per cell (D)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    mix: dict[Category, float] = Field(
        default_factory=lambda: {"adversarial": 0.4, "objective": 0.3, "subjective": 0.3},
        description="share of each category in a cell's training pairs")
    eval: dict[Category, int] = Field(
        default_factory=lambda: {"adversarial": 150, "objective": 150, "subjective": 200},
        description="test pairs per category (the same test set for every cell)")
    epochs: float = Field(2.0, gt=0, description="passes over the cell's pairs")
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(64, ge=8)
    label_noise: float = Field(0.1, ge=0, le=0.5)
    corpus_seed: int = 0
    trainer: TrainConfig = Field(default_factory=lambda: TrainConfig(lr=2e-3, max_steps=1, lr_schedule="cosine",
                                                                      warmup_steps=5, min_lr_ratio=0.1))
    n_boot: int = Field(300, ge=10)

    @model_validator(mode="after")
    def _check(self) -> ScalingGrid:
        if any(d < 8 for d in self.data_sizes):
            raise ValueError(f"data_sizes must be at least 8 pairs each, got {self.data_sizes}")
        if abs(sum(self.mix.values()) - 1) > 1e-6 or any(v < 0 for v in self.mix.values()):
            raise ValueError(f"mix shares must be non-negative and sum to 1, got {self.mix}")
        return self


@dataclass(frozen=True)
class Cell:
    index: int
    model_size: str
    data_size: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.index:03d}-{self.model_size}-D{self.data_size}-s{self.seed}"


def cells(grid: ScalingGrid) -> list[Cell]:
    combos = [(m, d, s) for m in grid.model_sizes for d in grid.data_sizes for s in grid.seeds]
    return [Cell(i, m, d, s) for i, (m, d, s) in enumerate(combos)]


def cell_counts(grid: ScalingGrid, data_size: int) -> dict[str, int]:
    """Pairs per category of a cell: shares of D, rounded, the remainder to the largest share."""
    counts = {k: int(math.floor(v * data_size)) for k, v in grid.mix.items()}
    largest = max(grid.mix, key=grid.mix.get)
    counts[largest] += data_size - sum(counts.values())
    return counts


def cell_config(grid: ScalingGrid, cell: Cell):
    from qwenkit.reward.config import RewardTrainConfig

    steps = max(1, math.ceil(cell.data_size * grid.epochs / grid.batch_size))
    trainer = grid.trainer.model_copy(update={"max_steps": steps, "seed": cell.seed,
                                              "checkpoint_every": max(1, steps // 2)})
    return RewardTrainConfig.model_validate({
        "model": {"size": cell.model_size, "seed": cell.seed, "max_length": grid.max_length},
        "data": {"synthetic": {"train": cell_counts(grid, cell.data_size), "eval": dict(grid.eval),
                               "seed": grid.corpus_seed, "label_noise": grid.label_noise}},
        "batch_size": grid.batch_size,
        "trainer": trainer.model_dump(),
    })


def non_embedding_parameters(model) -> int:
    """Parameters of the backbone without the token embeddings (Kaplan et al.'s N)."""
    backbone = model.classifier.base_model
    embedding = backbone.get_input_embeddings()
    return sum(p.numel() for p in backbone.parameters()) - sum(p.numel() for p in embedding.parameters())


def result_path(out: Path, cell: Cell) -> Path:
    return Path(out) / "cells" / cell.name / "result.json"


def run_cell(grid: ScalingGrid, index: int, out: str | Path, *, quiet: bool | None = True) -> dict:
    """Train and evaluate one cell (or return its saved result); resumes a killed cell from its checkpoint."""
    from qwenkit.core.checkpoint import atomic_write_text
    from qwenkit.reward.train import train_reward_model

    grid_cells = cells(grid)
    if not 0 <= index < len(grid_cells):
        raise IndexError(f"cell {index} does not exist; this grid has cells 0..{len(grid_cells) - 1}")
    cell = grid_cells[index]
    done = result_path(Path(out), cell)
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    resume = "auto" if (done.parent / "checkpoints").is_dir() else False
    trained = train_reward_model(cell_config(grid, cell), done.parent, resume=resume, quiet=quiet, save_model=False)
    result = {
        **asdict(cell),
        "parameters": non_embedding_parameters(trained.model),
        "overall": asdict(trained.evaluation.overall),
        "by_category": {k: asdict(v) for k, v in trained.evaluation.by_category.items()},
    }
    atomic_write_text(done, json.dumps(result, indent=2) + "\n")
    return result


def run_grid(grid: ScalingGrid, out: str | Path, *, workers: int = 1, quiet: bool | None = None) -> list[dict]:
    """Run every cell that has no result yet and return all results. With ``workers`` > 1 the cells run in that many
    spawned processes of one torch thread each; with one, here, under the caller's thread count."""
    import torch

    from qwenkit.core.parallel import run_in_processes
    from qwenkit.core.progress import ProgressBar

    out = Path(out)
    pending = [c.index for c in cells(grid) if not result_path(out, c).is_file()]
    with ProgressBar(len(pending), "scaling cells", quiet=quiet) as bar:
        run_in_processes(run_cell, [(grid, index, out) for index in pending], workers=workers,
                         threads=1 if workers > 1 else torch.get_num_threads(), on_done=lambda *_: bar.update(1))
    return collect_results(grid, out)


def collect_results(grid: ScalingGrid, out: str | Path) -> list[dict]:
    """Results of every finished cell, in cell order."""
    out = Path(out)
    return [json.loads(result_path(out, c).read_text(encoding="utf-8")) for c in cells(grid)
            if result_path(out, c).is_file()]


@dataclass
class CurveFit:
    category: str
    against: str  # "data" or "model"
    group: str  # the model size (for data curves) or "D=<size>" (for model curves)
    x: list[float]
    y: list[float]
    fit: object | None  # PowerLawFit, or None with fewer than four points
    relative_change: float  # (y at largest x - y at smallest x) / y at smallest x


def _mean_by(results: Sequence[dict], key, category: str) -> dict:
    groups: dict = {}
    for r in results:
        groups.setdefault(key(r), []).append(r["by_category"][category]["bt_loss"])
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def fit_grid(grid: ScalingGrid, results: Sequence[dict], *, seed: int = 0) -> list[CurveFit]:
    """Power-law fits of mean (over seeds) test BT loss per category: against D per model size, and against N at the
    largest data size that every model size has finished (an unfinished grid still gets an ``L(N)`` curve)."""
    from qwenkit.reward.scaling_fit import fit_power_law

    fits = []
    categories = sorted({c for r in results for c in r["by_category"]})
    for category in categories:
        for size in grid.model_sizes:
            points = _mean_by([r for r in results if r["model_size"] == size], lambda r: r["data_size"], category)
            if points:
                fits.append(_curve(category, "data", size, points, grid.n_boot, seed, fit_power_law))
        largest = _largest_shared_data_size(results)
        points = _mean_by([r for r in results if r["data_size"] == largest], lambda r: r["parameters"], category)
        if points:
            fits.append(_curve(category, "model", f"D={largest}", points, grid.n_boot, seed, fit_power_law))
    return fits


def _largest_shared_data_size(results: Sequence[dict]) -> int:
    """The largest D that every model size in ``results`` has finished (the largest D of a complete grid)."""
    sizes_by_model: dict[str, set[int]] = {}
    for r in results:
        sizes_by_model.setdefault(r["model_size"], set()).add(r["data_size"])
    shared = set.intersection(*sizes_by_model.values())
    return max(shared) if shared else max(r["data_size"] for r in results)


def _curve(category, against, group, points, n_boot, seed, fitter) -> CurveFit:
    x, y = [float(k) for k in points], [float(v) for v in points.values()]
    fit = fitter(x, y, n_boot=n_boot, seed=seed) if len(x) >= 4 else None
    return CurveFit(category, against, group, x, y, fit, (y[-1] - y[0]) / y[0])
