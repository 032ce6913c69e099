"""Reproductions: each domain registers quick (``qwenkit demo``) and full (``qwenkit repro NAME --full``) runs.

A domain exposes them in ``qwenkit/<domain>/repro.py`` as ``REPROS = [Repro(...), ...]``; ``discover_repros`` finds them
without the CLI naming any domain. A repro's ``run`` writes ``report.md``/``report.html`` into ``ctx.run.path`` and
returns a one-line summary of what it measured, which the demo index shows next to the link.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qwenkit.core.runs import RunDir


@dataclass(frozen=True)
class ReproContext:
    run: RunDir
    full: bool = False
    seed: int = 0
    threads: int | None = None


@dataclass(frozen=True)
class Repro:
    name: str
    title: str
    run: Callable[[ReproContext], str]
    quick_minutes: float = 1.0
    """Expected wall time of the quick version on 2 CPU cores (the demo's whole budget is ~10 minutes)."""
    order: int = 100
    """Demo order; lower runs first."""


def discover_repros(package: str = "qwenkit") -> dict[str, Repro]:
    """All ``REPROS`` of ``<package>.<sub>.repro`` modules, by name, in demo order."""
    root = importlib.import_module(package)
    found: dict[str, Repro] = {}
    for info in pkgutil.iter_modules(root.__path__):
        if not info.ispkg or info.name == "core":
            continue
        if not (Path(info.module_finder.path) / info.name / "repro.py").exists():
            continue
        for repro in importlib.import_module(f"{package}.{info.name}.repro").REPROS:
            if repro.name in found:
                raise ValueError(f"two reproductions are named {repro.name!r}; names must be unique")
            found[repro.name] = repro
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


def write_index(root: Path, entries: list[dict[str, str]]) -> tuple[Path, Path]:
    """The demo's index page: one row per reproduction, linking its report."""
    from qwenkit.core.report import Report

    report = Report("qwenkit demo")
    report.text(
        "Each row is one quick reproduction run on this machine; open its report for the curves and tables. "
        "Longer versions: `qwenkit repro NAME --full`."
    )
    rows = [
        {
            "reproduction": f"[{e['title']}]({e['link']})",
            "status": e["status"],
            "seconds": e["seconds"],
            "measured": e["summary"],
        }
        for e in entries
    ]
    report.table(rows, ["reproduction", "status", "seconds", "measured"])
    return report.write(root, name="index")
