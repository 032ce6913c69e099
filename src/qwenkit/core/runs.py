"""A run directory: resolved config, ``metrics.jsonl``, plots, checkpoints and the report of one run.

Layout::

    <run>/config.yaml        the resolved config (what was actually run)
    <run>/metrics.jsonl      one JSON object per logged step: {"step": int, "<name>": float, ...}
    <run>/plots/*.png        figures
    <run>/checkpoints/       see qwenkit.core.checkpoint
    <run>/report.md, report.html

:func:`start_run` opens a run directory for a command: it runs *after* the config and inputs are validated, checks what
``--resume`` finds there, and only then writes ``config.yaml``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from qwenkit.core.checkpoint import atomic_write_text, latest_checkpoint, remove_leftovers
from qwenkit.core.config import dump_config
from qwenkit.core.errors import ResumeError

ResumeMode = Literal["auto", "must"] | bool | None
"""``False``/``None``: a new run (a directory with a checkpoint is refused); ``True``/``"auto"``: continue from the
latest checkpoint, or start at step 0 when there is none (and say so); ``"must"``: continue, or refuse."""

RESUMABLE_FIELDS = ("trainer.max_steps", "trainer.eval_every", "trainer.checkpoint_every", "trainer.keep_last",
                    "trainer.log_every")
"""Config fields that may differ when a run is resumed (they change how long it runs or how often it reports, not
what it trains). Domains add their own with ``start_run(..., may_change=...)``."""


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

    def disk_usage_bytes(self) -> dict[str, int]:
        """Bytes on disk: ``total`` for the whole run and ``checkpoints`` for its checkpoints."""
        return {"total": _tree_bytes(self.path), "checkpoints": _tree_bytes(self.checkpoints_dir)}

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


def normalize_resume(resume: ResumeMode | str) -> Literal["auto", "must"] | None:
    """``"auto"``, ``"must"`` or None (no resume) for every accepted spelling; anything else is a ResumeError."""
    if resume is None or resume is False or resume in ("no", "never", "off"):
        return None
    if resume is True or resume in ("auto", "yes", "on"):
        return "auto"
    if resume == "must":
        return "must"
    raise ResumeError(f"--resume={resume!r} is not understood; use --resume (continue if possible) or --resume=must")


def start_run(
    out: str | Path,
    config: BaseModel | Mapping[str, Any],
    *,
    resume: ResumeMode | str = False,
    may_change: Collection[str] = (),
) -> RunDir:
    """Open the run directory ``out`` for a validated ``config`` and write its ``config.yaml``.

    Without resume, a directory that already holds a checkpoint is refused. With ``resume="auto"`` a directory without a
    checkpoint starts from step 0 (a note on stderr says so); ``"must"`` refuses it. A resumed run whose saved config
    differs in any field outside :data:`RESUMABLE_FIELDS` and ``may_change`` is refused with the changed fields listed.
    Leftovers of a killed run (half-written checkpoints, temporary files) are removed first.
    """
    mode = normalize_resume(resume)
    run = RunDir(out)
    remove_leftovers(run.path)
    remove_leftovers(run.checkpoints_dir)
    checkpoint = latest_checkpoint(run.checkpoints_dir)
    if mode is None and checkpoint is not None:
        raise ResumeError(f"{run.path} already holds a run (checkpoint {checkpoint.name}); pass --resume to continue "
                          "it, or choose another --out")
    if mode is not None and checkpoint is None:
        if mode == "must":
            raise ResumeError(f"--resume=must: {run.checkpoints_dir} holds no checkpoint to resume from")
        print(f"note: --resume found no checkpoint in {run.checkpoints_dir}; starting from step 0", file=sys.stderr)
    new = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
    if mode is not None and checkpoint is not None and run.config_path.is_file():
        saved = yaml.safe_load(run.config_path.read_text(encoding="utf-8")) or {}
        allowed = set(RESUMABLE_FIELDS) | set(may_change)
        changed = [(key, old, value) for key, old, value in changed_fields(saved, new) if key not in allowed]
        if changed:
            lines = "\n".join(f"  - {key}: {old!r} -> {value!r}" for key, old, value in changed)
            raise ResumeError(
                f"cannot resume {run.path}: the config differs from the one it was started with in fields that shape "
                f"training:\n{lines}\nundo these changes, or start a new run with another --out (fields that may "
                f"change on resume: {', '.join(sorted(allowed))})"
            )
    run.save_config(config)
    return run


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted.key, old, new)`` for every leaf that differs between two nested mappings (missing = None)."""
    changed = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        dotted = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changed.extend(changed_fields(a, b, prefix=f"{dotted}."))
        elif _normalise(a) != _normalise(b):
            changed.append((dotted, a, b))
    return changed


def _normalise(value: Any) -> Any:
    """Tuples and lists compare equal (YAML has only lists)."""
    if isinstance(value, tuple | list):
        return [_normalise(v) for v in value]
    return value


def _tree_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
