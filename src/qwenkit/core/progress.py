"""Progress bars for long loops (rich), silent when output is not a terminal, under ``--quiet`` or QWENKIT_QUIET=1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

_quiet_override: bool | None = None


def set_quiet(quiet: bool | None) -> None:
    """Force progress output off (True), on (False), or back to automatic (None). Set by the CLI's ``--quiet``."""
    global _quiet_override
    _quiet_override = quiet


def is_quiet() -> bool:
    if _quiet_override is not None:
        return _quiet_override
    if os.environ.get("QWENKIT_QUIET", "").lower() in {"1", "true", "yes"}:
        return True
    return not sys.stderr.isatty()


class ProgressBar:
    """A single progress bar: ``with ProgressBar(total, "training") as bar: bar.update(1, loss=0.3)``."""

    def __init__(self, total: int | None, description: str, *, quiet: bool | None = None):
        self.quiet = is_quiet() if quiet is None else quiet
        self.description = description
        self._progress: Progress | None = None
        self._task = None
        self.total = total

    def __enter__(self) -> ProgressBar:
        if not self.quiet:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[postfix]}"),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, postfix="")
        return self

    def update(self, advance: int = 1, **postfix: float | str) -> None:
        if self._progress is None:
            return
        text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in postfix.items())
        self._progress.update(self._task, advance=advance, postfix=text)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def track(items: Iterable[T], description: str, *, total: int | None = None, quiet: bool | None = None) -> Iterator[T]:
    """Iterate ``items`` with a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with ProgressBar(total, description, quiet=quiet) as bar:
        for item in items:
            yield item
            bar.update(1)
