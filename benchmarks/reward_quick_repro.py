"""Runs the reward domain's quick reproduction (``qwenkit repro reward-worldpm``) and keeps its report.

The report (``report.md``, plots, per-cell ``result.json``, the style-control report) is what docs/reward.md quotes;
it is written to ``benchmarks/results/reward_quick/`` together with the wall time and load average of the run.

usage: python benchmarks/reward_quick_repro.py [--threads 1] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "reward_quick"))
    args = parser.parse_args()
    os.environ.setdefault("QWENKIT_QUIET", "1")
    from qwenkit.core.repro import ReproContext
    from qwenkit.core.runs import RunDir
    from qwenkit.core.seeding import set_threads
    from qwenkit.reward.repro import run_reward_repro

    set_threads(args.threads)
    out = Path(args.out if not args.full else args.out.replace("reward_quick", "reward_full"))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = run_reward_repro(ReproContext(run=RunDir(Path(tmp) / "run"), full=args.full, seed=args.seed,
                                                threads=args.threads))
        seconds = time.perf_counter() - started
        shutil.rmtree(out, ignore_errors=True)
        run = Path(tmp) / "run"
        out.mkdir(parents=True)
        for name in ("report.md", "plots"):
            source = run / name
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, out / name)
        (out / "style-control").mkdir()
        for name in ("report.md", "eval.json"):
            shutil.copy2(run / "style-control" / name, out / "style-control" / name)
        cells = sorted((run / "grid" / "cells").glob("*/result.json"))
        (out / "cells.json").write_text(json.dumps([json.loads(p.read_text()) for p in cells], indent=2) + "\n")
    (out / "run.json").write_text(json.dumps({
        "summary": summary, "seconds": seconds, "threads": args.threads, "full": args.full,
        "load_average_1min_before": load_before, "load_average_1min_after": os.getloadavg()[0],
    }, indent=2) + "\n")
    print(f"{summary}  ({seconds:.0f} s) -> {out}")


if __name__ == "__main__":
    main()
