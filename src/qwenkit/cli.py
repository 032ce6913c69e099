"""``qwenkit``: one CLI, ``qwenkit <domain> <verb>``. Domains are discovered, never listed here.

Each domain package ``qwenkit/<domain>/`` that has a ``cli.py`` with ``app = typer.Typer(...)`` is mounted as
``qwenkit <domain>``. Domain CLI modules import torch and other heavy libraries inside their commands, so that
``qwenkit --help`` starts in well under a second.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import shutil
import time
import traceback
from pathlib import Path
from typing import Annotated

import typer

import qwenkit
from qwenkit.core.cli_options import QuietOption, ThreadsOption, apply_run_options

app = typer.Typer(
    name="qwenkit",
    help="The methods of the Qwen team's 2025 research, one toolkit. Run `qwenkit demo` for every quick "
    "reproduction, `qwenkit doctor` to see what this machine offers, `qwenkit <domain> --help` for each method.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)



def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"qwenkit {qwenkit.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """qwenkit command line."""


@app.command()
def doctor() -> None:
    """Print versions, CPU model, SIMD features, threads, and which optional backends import."""
    import platform

    from rich.console import Console
    from rich.table import Table

    from qwenkit.core.system import cpu_model, simd_features, usable_cores

    table = Table(title="qwenkit doctor", show_header=False)
    table.add_row("qwenkit", qwenkit.__version__)
    table.add_row("python", platform.python_version())
    for module in ("torch", "transformers", "accelerate", "numpy"):
        table.add_row(module, _module_version(module))
    table.add_row("machine", platform.machine())
    table.add_row("cpu", cpu_model())
    table.add_row("simd", " ".join(simd_features()) or "none detected")
    table.add_row("usable cores", str(usable_cores()))
    try:
        import torch

        table.add_row("torch threads", str(torch.get_num_threads()))
        table.add_row("cuda", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available")
    except ImportError:
        pass
    optional = ("trl", "diffusers", "sentence_transformers", "peft", "fastapi", "uvicorn", "openai", "gguf",
                "cffi", "rapidocr_onnxruntime", "pytesseract", "ir_measures", "vllm", "numba")
    for module in optional:
        table.add_row(f"optional: {module}", _module_version(module))
    Console().print(table)


def _module_version(module: str) -> str:
    if importlib.util.find_spec(module) is None:
        return "not installed"
    try:
        imported = importlib.import_module(module)
    except Exception as exc:  # an installed but broken backend is exactly what doctor must report
        return f"installed but fails to import: {type(exc).__name__}: {exc}"
    return str(getattr(imported, "__version__", "installed"))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Directory for all reports and the index page.")] = Path(
        "runs/demo"
    ),
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only these reproductions (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every reproduction.")] = 0,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run every registered quick reproduction and write one index page linking their reports."""
    from qwenkit.core.repro import discover_repros

    repros = discover_repros()
    names = list(only) if only else list(repros)
    unknown = [n for n in names if n not in repros]
    if unknown:
        raise typer.BadParameter(f"unknown reproduction(s) {unknown}; known: {list(repros)}", param_hint="--only")
    failures = _run_repros([repros[n] for n in names], out, full=False, seed=seed, threads=threads, quiet=quiet)
    if failures:
        raise typer.Exit(code=1)


@app.command()
def repro(
    name: Annotated[str, typer.Argument(help="Reproduction name (see `qwenkit repro --list`).")] = "",
    full: Annotated[bool, typer.Option("--full", help="The long version (may take hours on a CPU).")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the reproductions and exit.")] = False,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("runs/repro"),
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run one reproduction, quick by default or `--full`."""
    from qwenkit.core.repro import discover_repros

    repros = discover_repros()
    if list_ or not name:
        for item in repros.values():
            typer.echo(f"{item.name:24s} {item.title}  (~{item.quick_minutes:g} min quick)")
        return
    if name not in repros:
        raise typer.BadParameter(f"unknown reproduction {name!r}; known: {list(repros)}", param_hint="NAME")
    if _run_repros([repros[name]], out, full=full, seed=seed, threads=threads, quiet=quiet):
        raise typer.Exit(code=1)


def _run_repros(repros, out: Path, *, full: bool, seed: int, threads: int | None, quiet: bool) -> list[str]:
    from qwenkit.core.repro import ReproContext, write_index
    from qwenkit.core.runs import RunDir

    apply_run_options(threads, quiet)
    entries, failures = [], []
    for item in repros:
        # a reproduction's directory is regenerated output: start it clean so old metrics never mix in
        shutil.rmtree(out / item.name, ignore_errors=True)
        run = RunDir(out / item.name)
        typer.echo(f"== {item.name}: {item.title}")
        started = time.perf_counter()
        try:
            summary = item.run(ReproContext(run=run, full=full, seed=seed, threads=threads))
            status = "ok"
        except Exception as exc:  # one failing reproduction must not hide the others' reports
            failures.append(item.name)
            status = "FAILED"
            summary = f"{type(exc).__name__}: {exc}"
            (run.path / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
            typer.echo(traceback.format_exc(), err=True)
        seconds = time.perf_counter() - started
        typer.echo(f"   {status} in {seconds:.0f}s: {summary}")
        entries.append(
            {"title": item.title, "link": f"{item.name}/report.html", "status": status,
             "seconds": f"{seconds:.0f}", "summary": summary}
        )
    _, index_html = write_index(out, entries)
    typer.echo(f"index: {index_html}")
    return failures


def _mount_domains() -> None:
    for info in pkgutil.iter_modules(qwenkit.__path__):
        if not info.ispkg or info.name in {"core"}:
            continue
        if not (Path(info.module_finder.path) / info.name / "cli.py").exists():
            continue
        module = importlib.import_module(f"qwenkit.{info.name}.cli")
        app.add_typer(module.app, name=info.name)


_mount_domains()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
