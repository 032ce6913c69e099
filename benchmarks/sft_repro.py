"""The quick (or ``--full``) sft-rationales reproduction, kept under benchmarks/results/sft_repro/ for the docs.

Runs :func:`qwenkit.sft.repro.run_sft_repro` (what ``qwenkit repro sft-rationales`` runs) into a scratch directory
with one torch thread per worker, then copies the report, its plots, ``summary.json`` and ``arms.json`` (not the
trained models) to ``benchmarks/results/sft_repro[_full]/``, with the wall time and load averages.

usage: python benchmarks/sft_repro.py [--full] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--scratch", type=Path, default=Path("runs/sft-repro"))
    args = parser.parse_args()

    from qwenkit.core.repro import ReproContext
    from qwenkit.core.runs import RunDir
    from qwenkit.sft.repro import run_sft_repro

    shutil.rmtree(args.scratch, ignore_errors=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    line = run_sft_repro(ReproContext(run=RunDir(args.scratch), full=args.full, threads=1))
    seconds = time.perf_counter() - started
    target = RESULTS / ("sft_repro_full" if args.full else "sft_repro")
    shutil.rmtree(target, ignore_errors=True)
    (target / "plots").mkdir(parents=True)
    for name in ("report.md", "summary.json", "arms.json"):
        shutil.copy(args.scratch / name, target / name)
    for plot in (args.scratch / "plots").glob("*.png"):
        shutil.copy(plot, target / "plots" / plot.name)
    (target / "timing.json").write_text(json.dumps({
        "seconds": seconds, "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "summary": line}, indent=2), encoding="utf-8")
    print(line, f"({seconds:.0f} s)")


if __name__ == "__main__":
    main()
