"""``qwenkit permute``: the benchmark report, the randomized equivalence check, and plan inspection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="SIMD tensor permutation (generated C kernels): benchmark, check, explain.",
                  no_args_is_help=True)


@app.command()
def bench(
    out: Annotated[Path, typer.Option("--out", help="Directory for permute.json/.md/.html and the charts.")] = Path(
        "runs/permute-bench"),
    quick: Annotated[bool, typer.Option("--quick", help="The ~1-minute subset instead of the full matrix.")] = False,
    threads: Annotated[list[int] | None, typer.Option("--threads", help="Thread counts (repeatable).")] = None,
    repeats: Annotated[int, typer.Option(help="Runs per contender (min and median are kept).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the random 6-D and 20-D cases.")] = 0,
    sweep: Annotated[bool, typer.Option("--sweep", help="Also run the size sweep (16 elements to 64 MiB).")] = False,
    full: Annotated[bool, typer.Option("--full", help="With --sweep: sweep up to 1 GiB.")] = False,
) -> None:
    """Benchmark qwenkit against NumPy, torch, JAX and numba and write a report with bar charts."""
    from qwenkit.permute.bench import (
        SWEEP_DEFAULT_MAX_BYTES,
        SWEEP_FULL_MAX_BYTES,
        findings,
        full_cases,
        quick_cases,
        run_benchmark,
        run_sweep,
        summary_rows,
        sweep_minimum_line,
        write_report,
        write_sweep_report,
    )

    cases = quick_cases(seed) if quick else full_cases(seed)
    record = run_benchmark(cases, threads_list=tuple(threads or (1, 2)), repeats=repeats, with_peers=not quick,
                           progress=typer.echo)
    json_path, md_path, _ = write_report(record, out, title="qwenkit.permute benchmark")
    for line in findings(summary_rows(record)):
        typer.echo(line)
    typer.echo(f"wrote {json_path} and {md_path}")
    if sweep:
        sweep_record = run_sweep(SWEEP_FULL_MAX_BYTES if full else SWEEP_DEFAULT_MAX_BYTES, repeats=repeats,
                                 progress=typer.echo)
        typer.echo(sweep_minimum_line(sweep_record))
        typer.echo(f"wrote {write_sweep_report(sweep_record, out)}")


@app.command()
def check(
    cases: Annotated[int, typer.Option(min=1, help="Random cases; each runs on every ISA with 1 and 2 threads.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the case generator.")] = 0,
) -> None:
    """Randomized bit-exact comparison with NumPy on every ISA this CPU runs (plus scalar)."""
    from qwenkit.permute.check import run_check
    from qwenkit.permute.isa import cpu_isas

    typer.echo(f"ISAs: {', '.join(cpu_isas())}")
    report = run_check(cases, seed, progress=typer.echo)
    for failure in report.failures[:20]:
        typer.echo(f"MISMATCH {failure}", err=True)
    typer.echo(f"{report.cases} cases x {len(cpu_isas())} ISAs x 2 thread counts: "
               f"{'all equal to NumPy' if report.ok else f'{len(report.failures)} mismatches'}")
    if not report.ok:
        raise typer.Exit(code=1)


@app.command()
def explain(
    shape: Annotated[str, typer.Argument(help="Input shape, e.g. 32,64,56,56")],
    axes: Annotated[str, typer.Argument(help="Permutation, e.g. 0,2,3,1")],
    dtype: Annotated[str, typer.Option(help="NumPy dtype name.")] = "float32",
    threads: Annotated[int | None, typer.Option("--threads", help="Threads (default: automatic).")] = None,
    isa: Annotated[str, typer.Option(help="ISA or 'auto'.")] = "auto",
    tune: Annotated[bool, typer.Option("--tune", help="Also time the planner's variants on an array of this shape "
                                                      "(allocates and fills it) and print the fastest.")] = False,
) -> None:
    """Print the plan for a C-contiguous input: kernel class, fused and packed axes, tiles, threads."""
    import numpy as np

    from qwenkit.permute import make_plan
    from qwenkit.permute.isa import UnknownIsaError

    dims = _integers(shape, "SHAPE", "32,64,56,56")
    perm = _integers(axes, "AXES", "0,2,3,1")
    if sorted(perm) != list(range(len(dims))):
        raise typer.BadParameter(f"{axes!r} is not a permutation of the {len(dims)} axes 0..{len(dims) - 1}",
                                 param_hint="AXES")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise typer.BadParameter(f"{dtype!r} is not a NumPy dtype (float32, int16, uint8, ...)",
                                 param_hint="--dtype") from None
    # without --tune the array is never touched: the operating system maps no pages for it
    layout = np.zeros(dims, np_dtype) if tune else np.empty(dims, np_dtype)
    try:
        plan = make_plan(layout, perm, threads=threads, isa=isa, tune=tune)
    except UnknownIsaError as exc:
        raise typer.BadParameter(str(exc), param_hint="--isa") from None
    typer.echo(plan.describe())


def _integers(text: str, name: str, example: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of integers, e.g. {example}",
                                 param_hint=name) from None
    if any(v < 0 for v in values):
        raise typer.BadParameter(f"{text!r} holds a negative number", param_hint=name)
    return values
