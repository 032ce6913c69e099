"""A run directory: resolved config, ``metrics.jsonl``, plots, checkpoints and the report of one run.

Layout::

    <run>/config.yaml        the resolved config (what was actually run)
    <run>/metrics.jsonl      one JSON object per logged step: {"step": int, "<name>": float, ...}
    <run>/plots/*.png        figures
    <run>/checkpoints/       see qwenkit.core.checkpoint
    <run>/report.md, report.html
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from qwenkit.core.checkpoint import atomic_write_text
from qwenkit.core.config import dump_config


class RunDir:
    """Owns the files of one run. Creating it makes the directory; nothing is deleted."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def plot_path(self, name: str) -> Path:
        """Where a figure called ``name`` goes (``.png`` is added when missing)."""
        plots = self.path / "plots"
        plots.mkdir(exist_ok=True)
        return plots / (name if name.endswith(".png") else f"{name}.png")

    def save_config(self, config: BaseModel | Mapping[str, Any]) -> Path:
        if isinstance(config, BaseModel):
            text = dump_config(config)
        else:
            import yaml

            text = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
        atomic_write_text(self.config_path, text)
        return self.config_path

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append one line of metrics for ``step``; tensors and numpy scalars become floats."""
        record = {"step": int(step), **{k: _to_json_number(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        """All logged records in order; a torn last line (a kill mid-write) is ignored."""
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records logged after ``last_step`` (used on resume, so a resumed run logs each step once)."""
        kept = [r for r in self.read_metrics() if r.get("step", -1) <= last_step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """(steps, values) of metric ``name`` over the run, skipping steps that did not log it."""
        steps, values = [], []
        for record in self.read_metrics():
            if name in record and record[name] is not None:
                steps.append(record["step"])
                values.append(record[name])
        return steps, values


def _to_json_number(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value
