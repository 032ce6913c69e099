"""Run the face quick reproduction (or ``--full``) and keep its numbers in benchmarks/results/face_repro[_full].*

Usage: ``qk-cpu heavy .venv/bin/python benchmarks/face_repro.py [--full] [--threads N] [--keep DIR]``. The docs'
result tables come from here; ``--keep`` keeps the whole run (report with plots, rendered clip) in DIR.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from qwenkit.core.repro import ReproContext
from qwenkit.core.runs import RunDir
from qwenkit.face.repro import run_face_style

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per arm (arms run in parallel workers)")
    parser.add_argument("--keep", type=Path, default=None, help="run here and keep the run directory")
    args = parser.parse_args()
    name = "face_repro_full" if args.full else "face_repro"
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(args.keep or Path(tmp) / "face-style")
        summary = run_face_style(ReproContext(run=run, full=args.full, seed=args.seed, threads=args.threads))
        result = json.loads((run.path / "result.json").read_text())
        result["summary"] = summary
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        report = (run.path / "report.md").read_text()
        (RESULTS / f"{name}.md").write_text(report.split("## Rendered clip")[0].rstrip() + "\n")
        shutil.copy(run.path / "lve.png", RESULTS / f"{name}_lve.png")
    print(summary)


if __name__ == "__main__":
    main()
