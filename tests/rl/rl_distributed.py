"""Run a function in N gloo processes (torch.multiprocessing) and collect what each rank returns."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp


def _worker(rank: int, world: int, init_file: str, fn: Callable, args: tuple, results: Any) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results[rank] = fn(rank, world, *args)
    finally:
        torch.distributed.destroy_process_group()


def run_distributed(fn: Callable, world: int = 2, *args: Any, timeout_s: float = 120) -> list[Any]:
    """``[fn(rank, world, *args) for rank in range(world)]`` computed in ``world`` gloo processes."""
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        manager = mp.get_context("spawn").Manager()
        results = manager.dict()
        context = mp.start_processes(
            _worker, args=(world, init_file, fn, args, results), nprocs=world, join=False, start_method="spawn"
        )
        import time

        deadline = time.monotonic() + timeout_s
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                for process in context.processes:
                    process.kill()
                raise TimeoutError(f"distributed workers did not finish in {timeout_s} s (deadlock?)")
        out = [results[r] for r in range(world)]
        manager.shutdown()
        return out
