"""The qwenkit.permute benchmark (the issue's matrix) and size sweep, written to benchmarks/results/.

Each run takes a few minutes on 2 idle cores, so the matrix can be run by groups and merged into ``permute.json``
(a later run of a group replaces that group's results; each run's load average is kept; a run on another machine
starts a fresh record instead of merging):

    .venv/bin/python benchmarks/permute_bench.py --groups 2-D
    .venv/bin/python benchmarks/permute_bench.py --groups 3-D 4-D
    .venv/bin/python benchmarks/permute_bench.py --groups 6-D 20-D
    .venv/bin/python benchmarks/permute_bench.py --sweep [--full]   # 16 elements .. 64 MiB (1 GiB)
    .venv/bin/python benchmarks/permute_bench.py --diagnose   # what limits the cases below target

A run started under a wrapper that quiets the machine says so in its report when the wrapper's name is in
``$QWENKIT_BENCH_RUNNER`` (e.g. ``QWENKIT_BENCH_RUNNER="qk-cpu quiet" qk-cpu quiet .venv/bin/python ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from qwenkit.core.system import cpu_family_model, cpu_model, l2_cache_geometry
from qwenkit.permute import planner
from qwenkit.permute.bench import (
    BANDWIDTH_CASE_MIN_BYTES,
    BANDWIDTH_TARGET_PERCENT,
    GROUPS,
    SWEEP_DEFAULT_MAX_BYTES,
    SWEEP_FULL_MAX_BYTES,
    alias_experiment,
    diagnose_case,
    full_cases,
    has_cpu_pmu,
    launch_conditions,
    merge_records,
    quick_cases,
    run_benchmark,
    run_sweep,
    span_experiment,
    stride_experiment,
    summary_rows,
    sweep_minimum_line,
    tile_shape_experiment,
    tile_table_experiment,
    tile_table_summary,
    write_diagnosis_report,
    write_report,
    write_span_report,
    write_sweep_report,
    write_tile_report,
    write_tile_table_report,
)
from qwenkit.permute.planner import tile_table_name


def run_info(**extra) -> dict:
    """The head of an experiment's record: when it started, the load average then, the CPU and how it was launched."""
    return {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_before": os.getloadavg(),
            "cpu": cpu_model(), "cpu_family_model": cpu_family_model(), "launched": launch_conditions(), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--quick", action="store_true", help="the ~1-minute subset (permute_quick.*)")
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS), help="case groups to run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sweep", action="store_true", help="run the size sweep instead of the matrix")
    parser.add_argument("--full", action="store_true", help="sweep up to 1 GiB instead of 64 MiB")
    parser.add_argument("--diagnose", action="store_true",
                        help="measure what limits the 8 MiB+ cases of permute.json below 75 %% of np.copyto "
                             "or below 1.6x with 2 threads")
    parser.add_argument("--tiles", action="store_true",
                        help="time the macro tile shapes of the square transposes against each other")
    parser.add_argument("--tile-table", action="store_true",
                        help="time every candidate macro tile shape on every tiled case of 8 MiB or more "
                             "(the evidence for this machine's row of planner.TILE_SHAPE_TABLES)")
    parser.add_argument("--alias-cut", choices=("table", "on", "off"), default="table",
                        help="with --tile-table: the L2 alias cut (planner.ALIAS_CUT) as this machine's table says, "
                             "or forced on or off for the run")
    parser.add_argument("--spans", action="store_true",
                        help="time row copies into np.empty outputs with their runs streamed in spans and one by one")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the existing JSON")
    args = parser.parse_args()
    if args.sweep:
        record = run_sweep(SWEEP_FULL_MAX_BYTES if args.full else SWEEP_DEFAULT_MAX_BYTES, repeats=args.repeats)
        md_path = write_sweep_report(record, args.out)
        print(sweep_minimum_line(record))
        print(f"wrote {md_path}")
        return
    if args.tiles:
        info = run_info(repeats=args.repeats)
        rows = tile_shape_experiment(repeats=args.repeats)
        alias_rows = alias_experiment(repeats=args.repeats)
        info["load_average_after"] = os.getloadavg()
        info["l2"] = l2_cache_geometry()
        for row in rows:
            print(f"{row['dtype']:10s} {row['tile']:32s} {row['% of np.copyto']:5.1f} % of np.copyto", flush=True)
        for row in alias_rows:
            print(f"{row['axes']:10s} {row['rule']:32s} {row['% of np.copyto']:5.1f} % of np.copyto", flush=True)
        print(f"wrote {write_tile_report(rows, args.out, info, alias_rows=alias_rows)}")
        return
    if args.tile_table:
        table = tile_table_name()
        if args.alias_cut != "table":
            planner.ALIAS_CUT[table] = args.alias_cut == "on"
        info = run_info(repeats=args.repeats, table=table, alias_cut=planner.ALIAS_CUT[table],
                        alias_cut_forced=args.alias_cut != "table")
        rows = tile_table_experiment(repeats=args.repeats)
        info["load_average_after"] = os.getloadavg()
        for row in tile_table_summary(rows):
            print(f"width {row['width']:2d} {row['tile']:14s} geomean {row['geomean % of np.copyto']:5.1f} % of "
                  f"np.copyto, min {row['min x NumPy']:.2f}x NumPy{'  (best)' if row['best mean'] else ''}"
                  f"{'  (table now)' if row['in table now'] else ''}", flush=True)
        print(f"wrote {write_tile_table_report(rows, args.out, info)}")
        return
    if args.spans:
        info = run_info(repeats=args.repeats)
        rows = span_experiment(repeats=args.repeats)
        info["load_average_after"] = os.getloadavg()
        for row in rows:
            print(f"{row['shape']:22s} {row['run bytes']:5d} B  spans {row['x NumPy, spans']:.2f}x  run by run "
                  f"{row['x NumPy, run by run']:.2f}x NumPy", flush=True)
        print(f"wrote {write_span_report(rows, args.out, info)}")
        return
    if args.diagnose:
        diagnose(args.out, args.repeats)
        return
    name = "permute_quick" if args.quick else "permute"
    json_path = args.out / f"{name}.json"
    old = json.loads(json_path.read_text()) if json_path.exists() else None
    if args.report_only:
        record = old
    else:
        cases = [c for c in (quick_cases() if args.quick else full_cases()) if c.group in args.groups]
        record = merge_records(None if args.quick else old,
                               run_benchmark(cases, threads_list=tuple(args.threads), repeats=args.repeats))
    json_path, md_path, _ = write_report(record, args.out, name=name, title="qwenkit.permute benchmark")
    print(f"wrote {json_path} and {md_path}")


def diagnose(directory: Path, repeats: int) -> None:
    record = json.loads((directory / "permute.json").read_text())
    slow = {row["case"] for row in summary_rows(record) if row["MiB"] * 2**20 >= BANDWIDTH_CASE_MIN_BYTES
            and (row["% of np.copyto"] < BANDWIDTH_TARGET_PERCENT or row.get("2 threads / 1", 2.0) < 1.6)}
    info = run_info(cpu_pmu=has_cpu_pmu())
    entries = []
    for case in full_cases():
        if case.name in slow:
            entries.append(diagnose_case(case, repeats))
            verdict = entries[-1]["verdict"]
            print(f"{case.name}: {entries[-1]['default % of np.copyto']:.0f} % of np.copyto; 1 thread: "
                  f"{verdict['1 thread']}; 2 threads: {verdict['2 threads']}", flush=True)
    strides = stride_experiment(repeats)
    for row in strides:
        print(f"input rows {row['input rows apart (KiB)']:.0f} KiB apart{' (padded)' if row['padded'] else ''}: "
              f"{row['kernel % of np.copyto']:.0f} % of np.copyto", flush=True)
    info["load_average_after"] = os.getloadavg()
    print(f"wrote {write_diagnosis_report(entries, directory, info, strides=strides)}")


if __name__ == "__main__":
    main()
