"""The full qwenkit.permute benchmark (the issue's matrix), written to benchmarks/results/permute.{json,md,html}.

Run: ``.venv/bin/python benchmarks/permute_bench.py`` (about 10-15 minutes on 2 cores); same as
``qwenkit permute bench --out benchmarks/results``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qwenkit.permute.bench import full_cases, quick_cases, run_benchmark, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--quick", action="store_true", help="the ~1-minute subset")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the existing JSON")
    args = parser.parse_args()
    name = "permute_quick" if args.quick else "permute"
    if args.report_only:
        record = json.loads((args.out / f"{name}.json").read_text())
    else:
        cases = quick_cases() if args.quick else full_cases()
        record = run_benchmark(cases, threads_list=tuple(args.threads), repeats=args.repeats,
                               with_numba=not args.quick)
    json_path, md_path, _ = write_report(record, args.out, name=name, title="qwenkit.permute benchmark")
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
