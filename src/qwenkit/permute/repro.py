"""Quick reproduction: a ~1-minute subset of the permutation benchmark and a short size sweep, as reports."""

from __future__ import annotations

from qwenkit.core.repro import Repro, ReproContext

QUICK_SWEEP_MAX_BYTES = 4 * 2**20


def run(ctx: ReproContext) -> str:
    from qwenkit.permute.bench import (
        SWEEP_DEFAULT_MAX_BYTES,
        full_cases,
        lowest_ratio,
        quick_cases,
        run_benchmark,
        run_sweep,
        summary_rows,
        sweep_minimum_line,
        write_report,
        write_sweep_report,
    )

    threads = (1, 2) if ctx.full else (1,)
    cases = full_cases(ctx.seed) if ctx.full else quick_cases(ctx.seed)
    record = run_benchmark(cases, threads_list=threads, repeats=5 if ctx.full else 3, with_peers=ctx.full,
                           progress=lambda line: None)
    write_report(record, ctx.run.path, name="report", title="qwenkit.permute: speed-up over NumPy")
    sweep = run_sweep(SWEEP_DEFAULT_MAX_BYTES if ctx.full else QUICK_SWEEP_MAX_BYTES, repeats=3,
                      progress=lambda line: None)
    write_sweep_report(sweep, ctx.run.path, name="sweep")
    rows = summary_rows(record)
    best = max(rows, key=lambda r: r["x NumPy"])
    wrong = [r["case"] for r in rows if r["correct"] != "yes"] + [
        str(e["shape"]) for e in sweep["sizes"] if not e["correct"]]
    if wrong:
        raise AssertionError(f"permute disagreed with NumPy on {wrong}")
    lowest, case, kind = lowest_ratio(rows)
    return (f"1 thread: {best['x NumPy']:.1f}x NumPy on {best['case']}, lowest {lowest:.2f}x ({case}, {kind}); "
            f"{sweep_minimum_line(sweep)}; load {record['load_average_before'][0]:.1f}")


REPROS = [Repro("permute", "SIMD tensor permutation vs NumPy (GenTT)", run, quick_minutes=0.4, order=60)]
