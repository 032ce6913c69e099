"""The CLI flags every qwenkit command shares, declared once so they mean the same thing everywhere.

Domain CLIs annotate their parameters with these types and call :func:`apply_run_options` first thing in a command.
Only typer is imported here, so a CLI module that uses them stays fast to import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[Path | None, typer.Option("--config", help="YAML config file.")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config field: key.sub=value (repeatable).")
]
ThreadsOption = Annotated[int | None, typer.Option("--threads", help="Torch threads (default: usable cores).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Seed (overrides the config's seed).")]
ResumeOption = Annotated[
    str | None,
    typer.Option(
        "--resume",
        help="Continue the run in --out from its latest checkpoint (`--resume`; starts at step 0 when there is none) "
        "or refuse without one (`--resume=must`). A changed training config is refused.",
        metavar="[=must]",
    ),
]
"""A string option; :func:`qwenkit.cli.run_cli` turns a bare ``--resume`` into ``--resume=auto``."""


def apply_run_options(threads: int | None, quiet: bool, seed: int | None = None) -> None:
    """Apply ``--threads``, ``--quiet`` and (when given) ``--seed`` to this process."""
    from qwenkit.core.progress import set_quiet
    from qwenkit.core.seeding import seed_everything, set_threads

    set_quiet(True if quiet else None)
    set_threads(threads)
    if seed is not None:
        seed_everything(seed)


def with_seed(overrides: list[str] | None, seed: int | None, seed_key: str) -> list[str]:
    """The ``--set`` overrides plus ``seed_key=seed`` when ``--seed`` was given (it wins, as the later override)."""
    return list(overrides or []) + ([f"{seed_key}={seed}"] if seed is not None else [])
