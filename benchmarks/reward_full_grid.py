"""Fits and reports the ``--full`` scaling grid from its finished cells (``benchmarks/results/reward_full/``).

``reward_quick_repro.py --full --work DIR`` trains the grid's cells in ``DIR/run/grid`` (resumable: finished cells
are skipped); this script reads the cells finished so far, fits ``L(D)`` and ``L(N)`` with the same functions as the
reproduction (:func:`qwenkit.reward.scaling.fit_grid`, :func:`qwenkit.reward.report.write_scaling_report`) and
keeps the report, so the grid's result is committed even when the rest of the ``--full`` run (the style section and
the SmolLM2 LoRA model) has not finished.

usage: python benchmarks/reward_full_grid.py --work DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True, help="the --work directory of reward_quick_repro.py --full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "reward_full"))
    args = parser.parse_args()
    from qwenkit.core.config import load_config
    from qwenkit.reward.report import write_scaling_report
    from qwenkit.reward.repro import FULL_GRID
    from qwenkit.reward.scaling import ScalingGrid, cells, collect_results, fit_grid

    grid = load_config(ScalingGrid, {**FULL_GRID, "corpus_seed": args.seed})
    results = collect_results(grid, Path(args.work) / "run" / "grid")
    fits = fit_grid(grid, results, seed=args.seed)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    finished = {r["index"] for r in results}
    missing = [c.name for c in cells(grid) if c.index not in finished]
    notes = (f"The --full grid, fitted from its {len(results)} finished cells of {len(cells(grid))}"
             + (f" (not finished: {', '.join(missing)})" if missing else "")
             + ". The nano and tiny cells are the quick reproduction's (same configs); small and base are added so "
             "that L(N) has four sizes.")
    write_scaling_report(grid, results, fits, out, title="WorldPM at toy scale: the --full grid", notes=notes)
    (out / "cells.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "run.json").write_text(json.dumps({"cells": len(results), "missing": missing,
                                              "load_average_1min": os.getloadavg()[0]}, indent=2) + "\n")
    print(f"{len(results)} cells -> {out}")


if __name__ == "__main__":
    main()
