"""Reproductions: each domain registers quick (``qwenkit demo``) and full (``qwenkit repro NAME --full``) runs.

A domain exposes them in ``qwenkit/<domain>/repro.py`` as ``REPROS = [Repro(...), ...]``; ``discover_repros`` finds them
without the CLI naming any domain. A repro's ``run`` writes ``report.md``/``report.html`` into ``ctx.run.path`` and
returns a one-line summary of what it measured, which the demo index shows next to the link.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qwenkit.core.runs import RunDir


@dataclass(frozen=True)
class ReproContext:
    run: RunDir
    full: bool = False
    seed: int = 0
    threads: int | None = None


@dataclass(frozen=True)
class Repro:
    name: str
    title: str
    run: Callable[[ReproContext], str]
    quick_minutes: float = 1.0
    """Measured wall time of the quick version on one idle core at one thread, as `make demo` runs it (one
    reproduction per core); the demo schedules the longest first."""
    order: int = 100
    """Demo order; lower runs first."""


def discover_repros(package: str = "qwenkit") -> dict[str, Repro]:
    """All ``REPROS`` of ``<package>.<sub>.repro`` modules, by name, in demo order."""
    root = importlib.import_module(package)
    found: dict[str, Repro] = {}
    for info in pkgutil.iter_modules(root.__path__):
        if not info.ispkg or info.name == "core":
            continue
        if not (Path(info.module_finder.path) / info.name / "repro.py").exists():
            continue
        for repro in importlib.import_module(f"{package}.{info.name}.repro").REPROS:
            if repro.name in found:
                raise ValueError(f"two reproductions are named {repro.name!r}; names must be unique")
            found[repro.name] = repro
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


def write_index(root: Path, entries: list[dict[str, str]]) -> tuple[Path, Path]:
    """The demo's index page: one row per reproduction, linking its report."""
    from qwenkit.core.report import Report

    report = Report("qwenkit demo")
    report.text(
        "Each row is one quick reproduction run on this machine; open its report for the curves and tables. "
        "Longer versions: `qwenkit repro NAME --full`."
    )
    rows = [
        {
            "reproduction": f"[{e['title']}]({e['link']})",
            "status": e["status"],
            "seconds": e["seconds"],
            "measured": e["summary"],
        }
        for e in entries
    ]
    report.table(rows, ["reproduction", "status", "seconds", "measured"])
    return report.write(root, name="index")


def run_repro(name: str, out: Path, *, full: bool, seed: int, threads: int | None) -> dict[str, str]:
    """Run one reproduction into ``out/name`` (started clean) and return its index entry; a failure is recorded
    (``error.txt`` with the traceback, status ``FAILED``) rather than raised, so one failure hides no other report."""
    import shutil
    import time
    import traceback

    from qwenkit.core.seeding import seed_everything

    item = discover_repros()[name]
    # a reproduction's directory is regenerated output: start it clean so old metrics never mix in
    shutil.rmtree(out / item.name, ignore_errors=True)
    run = RunDir(out / item.name)
    # the demo runs several reproductions in one worker process: seed every global generator so that a result never
    # depends on which reproductions ran before it
    seed_everything(seed)
    started = time.perf_counter()
    try:
        summary = item.run(ReproContext(run=run, full=full, seed=seed, threads=threads))
        status = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure of one reproduction is reported in its row
        status, summary = "FAILED", f"{type(exc).__name__}: {exc}"
        (run.path / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
    return {"name": item.name, "title": item.title, "link": f"{item.name}/report.html", "status": status,
            "seconds": f"{time.perf_counter() - started:.0f}", "summary": summary}


def run_repros_in_parallel(names: list[str], out: Path, *, full: bool, seed: int, threads: int, workers: int,
                           on_start: Callable[[str], None], on_done: Callable[[dict[str, str]], None],
                           ) -> list[dict[str, str]]:
    """Run the reproductions ``workers`` at a time, each in a spawned process pinned to its own ``threads`` cores
    (so that a reproduction's own worker pools, sized by the usable cores, see only those), longest expected first;
    entries come back in the order of ``names``."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    repros = discover_repros()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    context = multiprocessing.get_context("spawn")
    core_sets = context.Queue()
    for k in range(workers):
        core_sets.put(cores[k * threads:(k + 1) * threads] if len(cores) >= workers * threads else [])
    queue = sorted(names, key=lambda n: -repros[n].quick_minutes)
    entries: dict[str, dict[str, str]] = {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_pin_worker,
                             initargs=(core_sets, threads)) as pool:
        running = {}
        while queue or running:
            while queue and len(running) < workers:
                name = queue.pop(0)
                on_start(name)
                running[pool.submit(run_repro, name, out, full=full, seed=seed, threads=threads)] = name
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                entries[running.pop(future)] = entry = future.result()
                on_done(entry)
    return [entries[n] for n in names]


def _pin_worker(core_sets, threads: int) -> None:
    import torch

    from qwenkit.core.progress import set_quiet

    cores = core_sets.get()
    if cores:
        os.sched_setaffinity(0, cores)
    torch.set_num_threads(threads)
    set_quiet(True)  # several reproductions share the terminal: their progress bars would interleave
