"""Quick reproduction: a ~1-minute subset of the permutation benchmark, as a report with a table and bar charts."""

from __future__ import annotations

from qwenkit.core.repro import Repro, ReproContext


def run(ctx: ReproContext) -> str:
    from qwenkit.permute.bench import full_cases, quick_cases, run_benchmark, summary_rows, write_report

    threads = (1, 2) if ctx.full else (1,)
    cases = full_cases(ctx.seed) if ctx.full else quick_cases(ctx.seed)
    record = run_benchmark(cases, threads_list=threads, repeats=5 if ctx.full else 3, with_numba=ctx.full,
                           progress=lambda line: None)
    write_report(record, ctx.run.path, name="report", title="qwenkit.permute: speed-up over NumPy")
    rows = [r for r in summary_rows(record) if r["threads"] == 1]
    best = max(rows, key=lambda r: r["x NumPy"])
    worst = min(rows, key=lambda r: r["x NumPy"])
    wrong = [r["case"] for r in rows if r["correct"] != "yes"]
    if wrong:
        raise AssertionError(f"permute disagreed with NumPy on {wrong}")
    return (f"1 thread: {best['x NumPy']:.1f}x NumPy on {best['case']} ({best['% of copy']:.0f}% of copy), "
            f"lowest {worst['x NumPy']:.2f}x on {worst['case']}; load {record['load_average_before'][0]:.1f}")


REPROS = [Repro("permute", "SIMD tensor permutation vs NumPy (GenTT)", run, quick_minutes=1.0, order=60)]
