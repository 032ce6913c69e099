"""Runs the reward domain's quick reproduction (``qwenkit repro reward-worldpm``) and keeps its report.

The report (``report.md``, plots, per-cell ``result.json``, the style-control report) is what docs/reward.md quotes;
it is written to ``benchmarks/results/reward_quick/`` (``reward_full/`` with ``--full``, which also keeps the SmolLM2
LoRA model's evaluation) together with the wall time, CPU time and load average of the run.

usage: python benchmarks/reward_quick_repro.py [--threads 1] [--full] [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished child processes (the grid's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "reward_quick"))
    parser.add_argument("--work", default=None,
                        help="run directory to keep (finished grid cells are skipped when rerun); default: temporary")
    args = parser.parse_args()
    os.environ.setdefault("QWENKIT_QUIET", "1")
    from qwenkit.core.repro import ReproContext
    from qwenkit.core.runs import RunDir
    from qwenkit.core.seeding import set_threads
    from qwenkit.reward.repro import run_reward_repro

    set_threads(args.threads)
    out = Path(args.out if not args.full else args.out.replace("reward_quick", "reward_full"))
    load_before = os.getloadavg()[0]
    with (contextlib.nullcontext(args.work) if args.work else tempfile.TemporaryDirectory()) as tmp:
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        summary = run_reward_repro(ReproContext(run=RunDir(Path(tmp) / "run"), full=args.full, seed=args.seed,
                                                threads=args.threads))
        seconds, cpu_seconds = time.perf_counter() - started, _cpu_seconds() - cpu_started
        shutil.rmtree(out, ignore_errors=True)
        run = Path(tmp) / "run"
        out.mkdir(parents=True)
        for name in ("report.md", "plots"):
            source = run / name
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, out / name)
        (out / "style-control").mkdir()
        for name in ("report.md", "eval.json"):
            shutil.copy2(run / "style-control" / name, out / "style-control" / name)
        if args.full and (run / "smollm2-lora" / "eval.json").is_file():
            (out / "smollm2-lora").mkdir()
            for name in ("eval.json", "metrics.jsonl", "config.yaml"):
                shutil.copy2(run / "smollm2-lora" / name, out / "smollm2-lora" / name)
        cells = sorted((run / "grid" / "cells").glob("*/result.json"))
        (out / "cells.json").write_text(json.dumps([json.loads(p.read_text()) for p in cells], indent=2) + "\n")
    (out / "run.json").write_text(json.dumps({
        "summary": summary, "seconds": seconds, "cpu_seconds_user_sys_with_workers": cpu_seconds,
        "threads": args.threads, "full": args.full,
        "load_average_1min_before": load_before, "load_average_1min_after": os.getloadavg()[0],
    }, indent=2) + "\n")
    print(f"{summary}  ({seconds:.0f} s) -> {out}")


if __name__ == "__main__":
    main()
