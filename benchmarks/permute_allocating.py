"""The allocating calls of the permute benchmark, alone: ``permute(a, axes)`` against ``np.ascontiguousarray`` on the
2-D 8192^2 float32 transpose, in a fresh process, first with no peer library loaded, then after torch, JAX (one jitted
call) and numba are imported, as the matrix's process has them.

Both calls allocate 256 MiB and write every page of it for the first time, so their times hold the kernel's page
faults; the matrix (``permute_bench.py``) measures them beside the peers and their allocations, this script without.
A second table times what those faults cost: 512 MiB faulted in right after the same amount was freed, and after
the memory was left free for a while, which on a VM guest that reports free memory to its host
(``core.system.free_page_reporting``) gives the host time to take the pages back.
Writes ``permute_allocating.md``/``.json`` to ``--out``::

    .venv/bin/python benchmarks/permute_allocating.py --out benchmarks/results/permute_zen4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from qwenkit.core.checkpoint import atomic_write_text
from qwenkit.core.report import Report
from qwenkit.core.system import cpu_family_model, cpu_model, free_page_reporting
from qwenkit.permute import permute
from qwenkit.permute.bench import (
    JAX_SINGLE_THREAD_FLAGS,
    cpu_text,
    fault_in_free_memory,
    fmt_load,
    page_reporting_text,
    quiet_peer_thread_pools,
    time_interleaved,
)


def measure(a: np.ndarray, after: str, repeats: int) -> dict:
    minima, medians = time_interleaved({"permute()": lambda: permute(a, (1, 0)),
                                        "np.ascontiguousarray": lambda: np.ascontiguousarray(a.T)}, repeats)
    return {"after": after, **{f"{k} min ms": 1e3 * v for k, v in minima.items()},
            **{f"{k} median ms": 1e3 * v for k, v in medians.items()},
            "x NumPy (medians)": medians["np.ascontiguousarray"] / medians["permute()"]}


REFAULT_BYTES = 512 * 2**20
REFAULT_IDLE_SECONDS = (0.0, 0.1, 1.0, 2.0, 4.0)


def refault(idle_seconds: float, repeats: int) -> dict:
    """Milliseconds to allocate ``REFAULT_BYTES`` and write one byte per page, after as much was freed
    ``idle_seconds`` before."""
    times = []
    for _ in range(repeats):
        fault_in_free_memory(REFAULT_BYTES)
        time.sleep(idle_seconds)
        started = time.perf_counter()
        fault_in_free_memory(REFAULT_BYTES)
        times.append(time.perf_counter() - started)
    return {"left free for s": idle_seconds, **{f"run {i + 1} ms": 1e3 * t for i, t in enumerate(times)},
            "median GB/s": REFAULT_BYTES / statistics.median(times) / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    info = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average_before": os.getloadavg(),
            "cpu": cpu_model(), "cpu_family_model": cpu_family_model(), "omp_wait_policy": quiet_peer_thread_pools(),
            "free_page_reporting": free_page_reporting()}
    a = np.random.default_rng(0).standard_normal((8192, 8192), dtype=np.float32)
    rows = [measure(a, "no peer imported", args.repeats)]
    import torch

    torch.set_num_threads(1)
    rows.append(measure(a, "import torch", args.repeats))
    os.environ.setdefault("XLA_FLAGS", JAX_SINGLE_THREAD_FLAGS)
    import jax
    import jax.numpy as jnp

    jax.jit(jnp.transpose)(a).block_until_ready()
    rows.append(measure(a, "import jax, one jitted transpose", args.repeats))
    import numba  # noqa: F401

    rows.append(measure(a, "import numba", args.repeats))
    refaults = [refault(idle, args.repeats) for idle in REFAULT_IDLE_SECONDS]
    info["load_average_after"] = os.getloadavg()
    for row in rows:
        print(f"{row['after']:34s} permute() {row['permute() median ms']:7.1f} ms  np.ascontiguousarray "
              f"{row['np.ascontiguousarray median ms']:7.1f} ms  {row['x NumPy (medians)']:.2f}x", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for row in refaults:
        print(f"{REFAULT_BYTES >> 20} MiB faulted in after {row['left free for s']:.1f} s free: "
              f"{row['median GB/s']:.2f} GB/s", flush=True)
    atomic_write_text(args.out / "permute_allocating.json",
                      json.dumps({**info, "rows": rows, "refaults": refaults}, indent=1))
    report = Report("qwenkit.permute: the allocating calls alone")
    report.text(f"Run {info['started']} on {cpu_text(info)}, load average before "
                f"{fmt_load(info['load_average_before'])}, after "
                f"{fmt_load(info['load_average_after'])}; `benchmarks/permute_allocating.py`: 2-D 8192^2 float32, "
                f"`permute(a, (1, 0))` against `np.ascontiguousarray(a.T)`, one interleaved loop of {args.repeats} "
                "rounds per row, 1 thread, in one fresh process, the peers imported one after another.")
    report.table(rows, list(rows[0]), float_format="{:.3g}")
    report.text(f"Faulting in {REFAULT_BYTES >> 20} MiB (allocate, write one byte per page) after as much memory was "
                f"freed and left free for a while, {args.repeats} runs each; "
                f"{page_reporting_text(info['free_page_reporting'])}.")
    report.table(refaults, list(refaults[0]), float_format="{:.3g}")
    md_path, _ = report.write(args.out, name="permute_allocating")
    print(f"wrote {md_path}")


if __name__ == "__main__":
    main()
