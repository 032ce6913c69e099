"""Independent jobs (training arms, grid cells) in worker processes, each with its own torch thread count.

One place for what the reproductions of several domains need: ``run_in_processes(fn, jobs)`` calls ``fn(*job)``
for every job and returns the results in the order of ``jobs``. Workers are *spawned* (never forked: a forked
torch with live OpenMP threads can deadlock), so ``fn`` must be a module-level function and the jobs picklable.
Each worker sets ``torch.set_num_threads(threads)`` before its first job, so ``workers * threads`` never exceeds
the cores asked for (oversubscribed torch threads spin-wait and run many times slower). With one worker the jobs
run in this process, one after another, under the same thread count, and the caller's thread count is restored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def default_workers(jobs: int, threads: int = 1) -> int:
    """As many workers as the usable cores allow at ``threads`` torch threads each, and no more than the jobs."""
    from qwenkit.core.system import usable_cores

    return max(1, min(jobs, usable_cores() // max(threads, 1)))


def run_in_processes(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    *,
    workers: int | None = None,
    threads: int = 1,
    on_done: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """``[fn(*job) for job in jobs]``, computed by ``workers`` spawned processes of ``threads`` torch threads each.

    ``workers`` defaults to :func:`default_workers`. ``on_done(index, result)`` is called in this process as each
    job finishes (in completion order), e.g. to advance a progress bar. An exception in a job is raised here once
    the job's turn comes, after the pool has shut down.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    workers = default_workers(len(jobs), threads) if workers is None else max(1, min(workers, len(jobs) or 1))
    if workers == 1:
        return _run_here(fn, jobs, threads, on_done)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_set_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(fn, *job): index for index, job in enumerate(jobs)}
        if on_done is not None:
            for future in as_completed(futures):
                if future.exception() is None:
                    on_done(futures[future], future.result())
        return [future.result() for future in futures]


def _run_here(fn: Callable[..., Any], jobs: Sequence[tuple], threads: int,
              on_done: Callable[[int, Any], None] | None) -> list[Any]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = []
        for index, job in enumerate(jobs):
            results.append(fn(*job))
            if on_done is not None:
                on_done(index, results[-1])
        return results
    finally:
        torch.set_num_threads(before)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
