"""The sft reproductions, kept for the docs: both quick halves (and the line over their six tasks), or ``--full``.

Quick: runs ``sft-rationales`` (arithmetic difficulty sweep) and ``sft-rationales-classify`` (classification-like
tasks), what ``qwenkit repro NAME`` runs, each into a scratch directory with ``--threads`` torch threads, and copies
each report, its plots, ``summary.json`` and ``arms.json`` (not the trained models) to
``benchmarks/results/sft_repro/<name>/``, with its wall time, CPU time (user + sys of this process and its
workers) and load averages; then fits the line of ECE gain on accuracy gain over the tasks of both halves into
``benchmarks/results/sft_repro/combined.{json,md}``.

``--full``: the full study (``qwenkit repro sft-rationales --full``) into ``docs/reports/sft-rationales-full/``.

usage: python benchmarks/sft_repro.py [--full] [--threads N] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK_RESULTS = ROOT / "benchmarks" / "results" / "sft_repro"
FULL_RESULTS = ROOT / "docs" / "reports" / "sft-rationales-full"


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children (the arm workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_one(run, scratch: Path, target: Path, *, full: bool, threads: int) -> dict:
    """One reproduction into ``scratch`` (started again into the same scratch, a study repeats only unfinished
    arms); its report, plots and JSON copied to ``target`` with ``timing.json``."""
    from qwenkit.core.repro import ReproContext
    from qwenkit.core.runs import RunDir

    load_before, cpu_before = os.getloadavg(), _cpu_seconds()
    started = time.perf_counter()
    line = run(ReproContext(run=RunDir(scratch), full=full, threads=threads))
    timing = {"seconds": time.perf_counter() - started, "cpu_seconds": _cpu_seconds() - cpu_before,
              "threads": threads, "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "summary": line}
    shutil.rmtree(target, ignore_errors=True)
    (target / "plots").mkdir(parents=True)
    for name in ("report.md", "report.html", "summary.json", "arms.json"):
        shutil.copy(scratch / name, target / name)
    for plot in (scratch / "plots").glob("*.png"):
        shutil.copy(plot, target / "plots" / plot.name)
    (target / "timing.json").write_text(json.dumps(timing, indent=2), encoding="utf-8")
    print(line, f"({timing['seconds']:.0f} s wall, {timing['cpu_seconds']:.0f} s CPU)", flush=True)
    return timing


def combined_line(halves: list[Path]) -> dict:
    """The bootstrap line of ECE gain on accuracy gain over the tasks of every half's ``summary.json``."""
    from qwenkit.sft.repro import _line_verdict, fit_gain_line

    tasks: dict[str, dict] = {}
    for half in halves:
        tasks.update(json.loads((half / "summary.json").read_text(encoding="utf-8"))["tasks"])
    fit = fit_gain_line(tasks)
    return {"tasks": {label: {"accuracy_gain": row["accuracy_gain"], "ece_gain": row["ece_gain"]}
                      for label, row in tasks.items()},
            "fit": None if fit is None else fit.__dict__, "verdict": _line_verdict(fit)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per arm (default: 2 quick, 1 full)")
    parser.add_argument("--scratch", type=Path, default=Path("runs/sft-repro"))
    args = parser.parse_args()

    from qwenkit.sft.repro import run_sft_classify_repro, run_sft_repro

    if args.full:
        run_one(run_sft_repro, args.scratch / "full", FULL_RESULTS, full=True, threads=args.threads or 1)
        return
    halves = {"sft-rationales": run_sft_repro, "sft-rationales-classify": run_sft_classify_repro}
    for name, run in halves.items():
        run_one(run, args.scratch / name, QUICK_RESULTS / name, full=False, threads=args.threads or 2)
    combined = combined_line([QUICK_RESULTS / name for name in halves])
    (QUICK_RESULTS / "combined.json").write_text(json.dumps(combined, indent=2), encoding="utf-8")
    rows = "\n".join(f"| {label} | {row['accuracy_gain']:+.2f} | {row['ece_gain']:+.3f} |"
                     for label, row in combined["tasks"].items())
    (QUICK_RESULTS / "combined.md").write_text(
        "# ECE gain against accuracy gain over both quick halves\n\n| task | acc gain | ECE gain |\n|---|---|---|\n"
        f"{rows}\n\n{combined['verdict']}\n", encoding="utf-8")
    print(combined["verdict"])


if __name__ == "__main__":
    main()
