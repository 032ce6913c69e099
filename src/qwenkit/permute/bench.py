"""The permutation benchmark: qwenkit against NumPy, torch, JAX and numba, side by side, interleaved, in one run.

Every contender writes the same permuted array; each repetition times all of them in turn (so machine noise hits
them alike) and the report keeps the minimum and the median. Short calls are timed over enough back-to-back calls
that one measurement lasts at least ``MIN_MEASURE_S``.

Accounting, the same for every contender: a permutation reads every byte once and writes every byte once, so its
bandwidth is ``2 * nbytes / t`` (bytes read plus bytes written over the one timer around the call). The ceiling is
the best plain copy of the same number of contiguous bytes: the faster of ``np.copyto`` and qwenkit's own
(streaming) contiguous copy, timed in the same loop. ``% of copy`` = ceiling time / contender time. A value above
100 % is physically impossible for a copy of the same bytes and is reported as a measurement error, never as a
result. The summary's lowest ratio to NumPy is the minimum over every case, output kind (pre-touched aligned
output, a plain ``np.empty`` output, allocating calls) and thread count.

The size sweep runs ``permute`` as a user calls it (``permute(a, axes, out=out)`` and ``permute(a, axes)``) against
``np.copyto(out, a.transpose(axes))`` and ``np.ascontiguousarray(a.transpose(axes))`` from 16 elements up to
64 MiB (1 GiB with ``full``) for a 2-D and a 4-D layout, and reports the ratio at every size and its minimum.
"""

from __future__ import annotations

import functools
import json
import math
import mmap
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qwenkit.core.system import free_page_reporting, machine_summary
from qwenkit.permute import codegen

MIN_MEASURE_S = 2e-3
"""One measurement of a contender lasts at least this long (many back-to-back calls for tiny arrays)."""
BANDWIDTH_CASE_MIN_BYTES = 8 * 2**20
"""Cases from this size are held to the bandwidth target (share of the copy ceiling)."""
BANDWIDTH_TARGET_PERCENT = 75.0
SWEEP_DEFAULT_MAX_BYTES = 64 * 2**20
SWEEP_FULL_MAX_BYTES = 2**30
SWEEP_SMALL_REPEATS = 15
SWEEP_ALLOCATING_MAX_BYTES = 256 * 2**20
"""Above this the sweep skips the allocating contenders (each would fault in another output of that size)."""
JAX_SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    dtype: str
    axes: tuple[int, ...]
    group: str

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


GROUPS = ("2-D", "3-D", "4-D", "6-D", "20-D")


def full_cases(seed: int = 0) -> list[Case]:
    """The issue's matrix: 2-D (every element width, a non-power-of-two side), all 3-D permutations, NCHW<->NHWC,
    attention, TTC 6-D, random 6-D, 20-D all-2."""
    cases = [Case(f"2-D 8192^2 {dt}", (8192, 8192), dt, (1, 0), "2-D")
             for dt in ("uint8", "int16", "float32", "float64", "complex128")]
    cases += [Case(f"2-D 8000^2 {dt}", (8000, 8000), dt, (1, 0), "2-D") for dt in ("int16", "float32")]
    cases += [Case(f"3-D {p}", (256, 256, 256), "float32", p, "3-D")
              for p in ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))]
    cases += [Case("3-D (2, 1, 0) uint8", (256, 256, 256), "uint8", (2, 1, 0), "3-D"),
              Case("NCHW->NHWC", (32, 64, 56, 56), "float32", (0, 2, 3, 1), "4-D"),
              Case("NHWC->NCHW", (32, 56, 56, 64), "float32", (0, 3, 1, 2), "4-D"),
              Case("NCHW->NHWC uint8", (32, 64, 56, 56), "uint8", (0, 2, 3, 1), "4-D"),
              Case("NCHW->NHWC 3-ch uint8", (64, 3, 224, 224), "uint8", (0, 2, 3, 1), "4-D"),
              Case("NHWC->NCHW 3-ch uint8", (64, 224, 224, 3), "uint8", (0, 3, 1, 2), "4-D"),
              Case("attention BSHD->BHSD", (8, 2048, 32, 128), "float32", (0, 2, 1, 3), "4-D"),
              Case("TTC 6-D (0,3,2,5,4,1)", (16, 32, 15, 32, 15, 15), "float32", (0, 3, 2, 5, 4, 1), "6-D")]
    rng = np.random.default_rng(seed)
    for i in range(4):
        shape = tuple(int(n) for n in rng.integers(8, 21, size=6))
        axes = tuple(int(k) for k in rng.permutation(6))
        dtype = ("float32", "float64", "int16", "uint8")[i]
        cases.append(Case(f"6-D random #{i} {dtype}", shape, dtype, axes, "6-D"))
    for i in range(2):
        cases.append(Case(f"20-D all-2 #{i}", (2,) * 20, "float32", tuple(int(k) for k in rng.permutation(20)),
                          "20-D"))
    return cases


def quick_cases(seed: int = 0) -> list[Case]:
    """A ~1-minute subset: the same kinds of case, smaller where NumPy takes seconds."""
    rng = np.random.default_rng(seed)
    return [Case(f"2-D 4096^2 {dt}", (4096, 4096), dt, (1, 0), "2-D") for dt in ("uint8", "int16", "float32")] + [
        Case("3-D (2, 1, 0)", (256, 256, 256), "float32", (2, 1, 0), "3-D"),
        Case("3-D (0, 2, 1)", (256, 256, 256), "float32", (0, 2, 1), "3-D"),
        Case("NCHW->NHWC", (32, 64, 56, 56), "float32", (0, 2, 3, 1), "4-D"),
        Case("NCHW->NHWC 3-ch uint8", (32, 3, 224, 224), "uint8", (0, 2, 3, 1), "4-D"),
        Case("TTC 6-D (0,3,2,5,4,1)", (16, 32, 15, 32, 15, 15), "float32", (0, 3, 2, 5, 4, 1), "6-D"),
        Case("6-D random f32", tuple(int(n) for n in rng.integers(8, 21, size=6)), "float32",
             tuple(int(k) for k in rng.permutation(6)), "6-D"),
        Case("20-D all-2", (2,) * 20, "float32", tuple(int(k) for k in rng.permutation(20)), "20-D"),
    ]


@dataclass
class Result:
    case: Case
    threads: int
    seconds_min: dict[str, float] = field(default_factory=dict)
    seconds_median: dict[str, float] = field(default_factory=dict)
    plan: str = ""
    correct: bool = True
    threads_used: int = 1
    peers_correct: dict[str, bool] = field(default_factory=dict)

    def speedup(self, contender: str, over: str = "numpy copyto") -> float:
        return self.seconds_min[over] / self.seconds_min[contender]

    def percent_of_copy(self, contender: str = "qwenkit") -> float:
        return 100.0 * copy_ceiling(self.seconds_min) / self.seconds_min[contender]

    def to_json(self) -> dict:
        return {"case": asdict(self.case), "bytes": self.case.nbytes, "bytes_moved": 2 * self.case.nbytes,
                "threads": self.threads, "seconds_min": self.seconds_min, "seconds_median": self.seconds_median,
                "plan": self.plan, "correct": self.correct, "threads_used": self.threads_used,
                "peers_correct": self.peers_correct}


def copy_ceiling(seconds: dict[str, float]) -> float:
    """The time of the best plain copy of the same bytes measured in the run (NumPy's or qwenkit's)."""
    return min(seconds[k] for k in ("copy: np.copyto", "copy: qwenkit") if k in seconds)


def time_interleaved(contenders: dict[str, Callable[[], object]], repeats: int, *,
                     before: dict[str, Callable[[], object]] | None = None) -> tuple[dict, dict]:
    """Per-call minimum and median seconds of every contender; each repetition times all of them in turn.

    A first call of each (untimed beyond calibration) warms it up and sets how many back-to-back calls make one
    measurement of at least ``MIN_MEASURE_S``. ``before[name]``, where given, runs untimed right before each of that
    contender's measurements (``fault_in_free_memory`` for the allocating calls)."""
    before = before or {}
    numbers = {}
    for name, fn in contenders.items():
        if name in before:
            before[name]()
        started = time.perf_counter()
        fn()
        single = time.perf_counter() - started
        numbers[name] = max(1, min(200_000, math.ceil(MIN_MEASURE_S / max(single, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            number = numbers[name]
            if name in before:
                before[name]()
            started = time.perf_counter()
            for _ in range(number):
                fn()
            times[name].append((time.perf_counter() - started) / number)
    return {k: min(v) for k, v in times.items()}, {k: statistics.median(v) for k, v in times.items()}


def fault_in_free_memory(nbytes: int) -> None:
    """Allocate ``nbytes``, write one byte in every page, free them: the next allocation of that size then maps
    pages this process has just freed, as a call that follows another allocating call does.

    Without it an allocating contender's time depends on what ran before it. On a VM guest that reports free memory
    to its host (``core.system.free_page_reporting``), memory left free for about half a second is taken back by
    the host, and faulting 512 MiB in again took 470-550 ms against 46-49 ms right after a free (the Zen 4
    guest, 2026-12-05, an ad-hoc loop; ``benchmarks/permute_allocating.py`` times the same); in the matrix, the
    allocating contender that came after the contenders with pre-allocated outputs paid that and the one after it
    did not."""
    pages = np.empty(nbytes, np.uint8)
    pages[::mmap.PAGESIZE] = 0
    del pages


def fault_in_before(contenders: dict, allocating: tuple[str, ...], nbytes: int) -> dict[str, Callable[[], None]]:
    """``time_interleaved``'s ``before`` hooks: ``fault_in_free_memory(nbytes)`` for each of ``allocating`` present
    in ``contenders``."""
    return {name: functools.partial(fault_in_free_memory, nbytes) for name in allocating if name in contenders}


def _filled(case_shape, dtype) -> np.ndarray:
    nbytes = math.prod(case_shape) * np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=nbytes, dtype=np.uint8).view(dtype).reshape(case_shape)


def _contenders(case: Case, threads: int, *, with_peers: bool) -> tuple[dict[str, Callable[[], object]], object,
                                                                        bool, dict[str, bool]]:
    from qwenkit.permute import empty_aligned, make_plan, permute

    a = _filled(case.shape, case.dtype)
    out_shape = tuple(case.shape[k] for k in case.axes)
    view = a.transpose(case.axes)
    out = empty_aligned(out_shape, case.dtype)
    out.fill(0)  # pre-touched: every contender with an output writes into mapped pages
    flat_src = a.reshape(-1)
    flat_dst = empty_aligned((a.size,), case.dtype)
    flat_dst.fill(0)
    plan = make_plan(a, case.axes, out, threads=threads)
    plan(a, out)
    copy_plan = make_plan(flat_src, None, flat_dst, threads=threads)
    # What a user's np.empty gives: large arrays start 16 bytes past a cache line, which the streaming paths must
    # handle as fast as an aligned output.
    user_out = np.empty(out_shape, case.dtype)
    user_out.fill(0)
    user_plan = make_plan(a, case.axes, user_out, threads=threads)
    user_plan(a, user_out)
    expected = np.ascontiguousarray(view)
    correct = out.tobytes() == expected.tobytes() == user_out.tobytes()
    contenders: dict[str, Callable[[], object]] = {
        "qwenkit": lambda: plan(a, out),
        "qwenkit into np.empty out": lambda: user_plan(a, user_out),
        "copy: np.copyto": lambda: np.copyto(flat_dst, flat_src),
        "copy: qwenkit": lambda: copy_plan(flat_src, flat_dst),
    }
    peers_correct: dict[str, bool] = {}
    if threads == 1:
        contenders["numpy copyto"] = lambda: np.copyto(out, view)
    else:
        one_thread = make_plan(a, case.axes, out, threads=1)
        contenders["qwenkit 1 thread"] = lambda: one_thread(a, out)
    if with_peers:
        contenders["qwenkit permute() allocating"] = lambda: permute(a, case.axes, threads=threads)
        contenders["numpy ascontiguousarray"] = lambda: np.ascontiguousarray(view)
    try:
        import torch

        torch.set_num_threads(threads)
        tensor, out_tensor = torch.from_numpy(a), torch.from_numpy(out)
        contenders["torch out.copy_(permute())"] = lambda: out_tensor.copy_(tensor.permute(case.axes))
        if with_peers:
            contenders["torch permute().contiguous()"] = lambda: tensor.permute(case.axes).contiguous()
    except ImportError:
        pass
    if with_peers:
        jax_fn = _jax_transpose(a, case.axes)
        if jax_fn is not None:
            peers_correct["jax"] = np.asarray(jax_fn()).tobytes() == expected.tobytes()
            contenders["jax jit transpose (allocating)"] = jax_fn
        assign = _numba_assign()
        if assign is not None:
            assign(out, view)  # compile outside the timed loop
            peers_correct["numba"] = out.tobytes() == expected.tobytes()
            contenders["numba"] = lambda: assign(out, view)
    return contenders, plan, correct, peers_correct


def _jax_transpose(a: np.ndarray, axes) -> Callable[[], object] | None:
    """JAX on the CPU, single-threaded (XLA flags set before the first import), 64-bit types enabled: a jitted
    ``jnp.transpose`` on an array already on the device, waited for with ``block_until_ready``."""
    if "jax" not in __import__("sys").modules:
        os.environ.setdefault("XLA_FLAGS", JAX_SINGLE_THREAD_FLAGS)
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    if a.dtype.byteorder not in "=|" or a.dtype.kind not in "biufc":
        return None
    device = jax.devices("cpu")[0]
    x = jax.device_put(a, device)
    fn = jax.jit(lambda v: jnp.transpose(v, axes))
    fn(x).block_until_ready()
    return lambda: fn(x).block_until_ready()


def _numba_assign():
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False)
    def assign(dst, src):
        dst[...] = src

    return assign


ALLOCATING_CONTENDERS = ("qwenkit permute() allocating", "numpy ascontiguousarray", "torch permute().contiguous()",
                         "jax jit transpose (allocating)")
"""The matrix's contenders that allocate their output: each is timed right after ``fault_in_free_memory``."""


def run_case(case: Case, threads: int, repeats: int, *, with_peers: bool) -> Result:
    contenders, plan, correct, peers_correct = _contenders(case, threads, with_peers=with_peers)
    seconds_min, seconds_median = time_interleaved(
        contenders, repeats, before=fault_in_before(contenders, ALLOCATING_CONTENDERS, case.nbytes))
    return Result(case, threads, seconds_min, seconds_median, plan.describe(), correct, plan.plan.threads,
                  peers_correct)


PEER_OMP_WAIT_POLICY = "PASSIVE"
"""``OMP_WAIT_POLICY`` for the peers' OpenMP pools (torch's), set before torch is first imported unless the user set
it. Spinning (libgomp's default), torch's idle workers keep the second of 2 cores busy after each torch call and
slow whatever runs next in the loop: 3-D (2, 0, 1) float32, qwenkit 2 threads / 1 thread in one loop with torch's
2-thread ``copy_``, 0.84-0.97x spinning against 1.57-1.65x passive (ad-hoc, 2026-12-04, the Zen 4 guest; the
matrices before then timed their 2-thread pass beside spinning workers)."""


def quiet_peer_thread_pools() -> str:
    """Set ``OMP_WAIT_POLICY`` (``PEER_OMP_WAIT_POLICY`` unless already set) before torch loads, and say what is in
    effect: the policy, or that torch was imported before this could be set."""
    if "torch" in sys.modules:
        return f"unknown (torch imported before the benchmark; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})"
    return os.environ.setdefault("OMP_WAIT_POLICY", PEER_OMP_WAIT_POLICY)


def environment() -> dict:
    """What the numbers depend on: machine, ISA, load, thread variables, glibc's non-temporal threshold."""
    from qwenkit.permute.isa import resolve_isa

    record = machine_summary()
    record["isa"] = resolve_isa("auto")
    record["numpy"] = np.__version__
    for module in ("torch", "numba", "jax"):
        try:
            record[module] = __import__(module).__version__
        except ImportError:
            record[module] = None
    record["env"] = {k: v for k, v in os.environ.items()
                     if k.startswith(("OPENBLAS", "OMP_", "MKL_", "QWENKIT_PERMUTE", "XLA_"))}
    record["glibc_non_temporal_threshold"] = _glibc_tunable("glibc.cpu.x86_non_temporal_threshold")
    record["platform"] = platform.platform()
    record["free_page_reporting"] = free_page_reporting()
    record["launched"] = launch_conditions()
    return record


RUNNER_ENV_VAR = "QWENKIT_BENCH_RUNNER"
"""Set by whoever starts a benchmark under a wrapper (e.g. ``qk-cpu quiet``) so that the report can say so."""


def launch_conditions() -> str:
    """How this run was started, for the report: the wrapper named in ``$QWENKIT_BENCH_RUNNER`` (else "started
    directly") and the CPUs the process may run on."""
    runner = os.environ.get(RUNNER_ENV_VAR) or "started directly"
    try:
        cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity interface (not Linux)
        return runner
    return f"{runner}, CPUs {cpus}"


def has_cpu_pmu() -> bool:
    """Whether the kernel exposes the CPU's hardware performance counters (a VM often does not)."""
    return Path("/sys/bus/event_source/devices/cpu").exists()


def cpu_text(environment_record: dict) -> str:
    """The report's name for the CPU: its model name and, where recorded, its x86 family and model."""
    family_model = environment_record.get("cpu_family_model")
    return f"{environment_record['cpu']} ({family_model})" if family_model else environment_record["cpu"]


def launched_text(environment_record: dict) -> str:
    """The report's words for how a run was started; records made before this was kept ran under ``qk-cpu quiet``."""
    return environment_record.get("launched", "under `qk-cpu quiet`")


def page_reporting_text(reporting: bool | None) -> str:
    """The report's words for ``core.system.free_page_reporting`` (None: a record made before it was kept)."""
    if reporting is None:
        return "free-page reporting not recorded"
    return ("this machine is a VM guest that reports free memory to its host" if reporting
            else "this machine does not report free memory to a host")


def _glibc_tunable(name: str) -> str | None:
    for loader in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"):
        if Path(loader).exists():
            try:
                listing = subprocess.run([loader, "--list-tunables"], capture_output=True, text=True, timeout=10)
            except OSError:
                return None
            for line in listing.stdout.splitlines():
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    return None


def run_benchmark(cases: list[Case], *, threads_list=(1, 2), repeats: int = 5, with_peers: bool = True,
                  progress: Callable[[str], None] = print) -> dict:
    """Time every case at every thread count. The peers (allocating calls, JAX, numba) run in the 1-thread pass;
    the other passes time qwenkit against its own 1-thread plan in the same loop (NumPy has no threads)."""
    wait_policy = quiet_peer_thread_pools()  # before environment() imports torch
    record = {"environment": {**environment(), "peer_omp_wait_policy": wait_policy},
              "load_average_before": os.getloadavg(), "repeats": repeats,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "results": []}
    results = []
    for threads in threads_list:
        for case in cases:
            result = run_case(case, threads, repeats, with_peers=with_peers and threads == 1)
            results.append(result)
            summary = (f"{result.speedup('qwenkit'):6.2f}x NumPy" if threads == 1
                       else f"{result.speedup('qwenkit', 'qwenkit 1 thread'):5.2f}x 1 thread")
            progress(f"{case.name:28s} {threads}T  {summary}  {result.percent_of_copy():5.0f}% of copy  "
                     f"load {os.getloadavg()[0]:.1f}")
    record["load_average_after"] = os.getloadavg()
    record["results"] = [r.to_json() for r in results]
    return record


def merge_records(old: dict | None, new: dict) -> dict:
    """``new``'s results replace ``old``'s for the same case and thread count; each run's load and time are kept
    (``runs``), so a report assembled from several short runs says which run measured what."""
    run = {key: new[key] for key in ("started", "load_average_before", "load_average_after", "repeats")}
    run["cases"] = sorted({r["case"]["name"] for r in new["results"]})
    for result in new["results"]:
        result["run"] = new["started"]
    if not old or not same_machine(old["environment"], new["environment"]):
        return {**new, "runs": [run]}
    replaced = {(r["case"]["name"], r["threads"]) for r in new["results"]}
    kept = [r for r in old["results"] if (r["case"]["name"], r["threads"]) not in replaced
            and "copy: np.copyto" in r["seconds_min"]]  # results of an older benchmark format are dropped
    runs = [r for r in old.get("runs", []) if any(x.get("run") == r["started"] for x in kept)] + [run]
    return {**new, "results": kept + new["results"], "runs": runs,
            "load_average_before": max(r["load_average_before"][0] for r in runs),
            "load_average_after": max(r["load_average_after"][0] for r in runs)}


def same_machine(old_environment: dict, new_environment: dict) -> bool:
    """Whether two runs may share one table: same CPU model, usable cores, ISA and NumPy (else the new run starts
    a fresh record, so one report never mixes machines)."""
    keys = ("cpu", "cores", "isa", "numpy")
    return all(old_environment.get(k) == new_environment.get(k) for k in keys)


def summary_rows(record: dict) -> list[dict]:
    """One row per case (1-thread pass), with the 2-thread pass's scaling when it was run."""
    scaling = {r["case"]["name"]: r for r in record["results"] if r["threads"] > 1}
    rows = []
    for item in record["results"]:
        if item["threads"] != 1:
            continue
        t = item["seconds_min"]
        case = item["case"]
        ceiling = copy_ceiling(t)
        percent = 100 * ceiling / t["qwenkit"]
        row = {"case": case["name"], "MiB": item["bytes"] / 2**20,
               "qwenkit ms": 1e3 * t["qwenkit"], "NumPy copyto ms": 1e3 * t["numpy copyto"],
               "x NumPy": t["numpy copyto"] / t["qwenkit"],
               "x NumPy (np.empty out)": t["numpy copyto"] / t["qwenkit into np.empty out"]}
        if "qwenkit permute() allocating" in t:
            row["x ascontiguousarray (alloc vs alloc)"] = (t["numpy ascontiguousarray"]
                                                           / t["qwenkit permute() allocating"])
        row["qwenkit GB/s"] = 2 * item["bytes"] / t["qwenkit"] / 1e9
        row["copy GB/s"] = 2 * item["bytes"] / ceiling / 1e9
        row["% of copy"] = percent if percent <= 100 else f"error ({percent:.0f})"
        row["% of np.copyto"] = 100 * t["copy: np.copyto"] / t["qwenkit"]
        row["NumPy % of copy"] = 100 * ceiling / t["numpy copyto"]
        if "torch out.copy_(permute())" in t:
            row["x torch copy_"] = t["torch out.copy_(permute())"] / t["qwenkit"]
        if "torch permute().contiguous()" in t:
            row["x torch contiguous (alloc)"] = t["torch permute().contiguous()"] / t["qwenkit permute() allocating"]
        if "jax jit transpose (allocating)" in t:
            row["x JAX (alloc)"] = t["jax jit transpose (allocating)"] / t["qwenkit permute() allocating"]
        if "numba" in t:
            row["x numba"] = t["numba"] / t["qwenkit"]
        two = scaling.get(case["name"])
        if two is not None:
            s = two["seconds_min"]
            row["2 threads / 1"] = s["qwenkit 1 thread"] / s["qwenkit"]
            row["x NumPy (2 threads)"] = t["numpy copyto"] / s["qwenkit"]
            row["threads used"] = two["threads_used"]
        row["correct"] = "yes" if item["correct"] else "NO"
        rows.append(row)
    return rows


RATIO_KINDS = ("x NumPy", "x NumPy (np.empty out)", "x ascontiguousarray (alloc vs alloc)", "x NumPy (2 threads)")


def lowest_ratio(rows: list[dict]) -> tuple[float, str, str] | None:
    """``(ratio, case, kind)``: the minimum ratio to NumPy over every case and every output kind and thread count."""
    found = [(row[kind], row["case"], kind) for row in rows for kind in RATIO_KINDS if kind in row]
    return min(found) if found else None


def findings(rows: list[dict]) -> list[str]:
    """The summary lines: lowest ratio, measurement errors, the bandwidth and the threading targets."""
    lines = []
    lowest = lowest_ratio(rows)
    if lowest:
        lines.append(f"Lowest ratio to NumPy over every case and output kind: **{lowest[0]:.2f}x** "
                     f"({lowest[1]}, {lowest[2]}).")
    errors = [f"{r['case']} {r['% of copy']}" for r in rows if isinstance(r["% of copy"], str)]
    lines.append("Measurement errors (above 100 % of the best copy of the same bytes; not results): "
                 + (", ".join(errors) if errors else "none") + ".")
    large = [r for r in rows if r["MiB"] * 2**20 >= BANDWIDTH_CASE_MIN_BYTES]
    for key, label in (("% of np.copyto", "of np.copyto"), ("% of copy", "of the best copy")):
        valid = [r for r in large if not isinstance(r[key], str)]
        if valid:
            below = [f"{r['case']} {r[key]:.0f} %" for r in valid if r[key] < BANDWIDTH_TARGET_PERCENT]
            lines.append(f"Cases of 8 MiB or more at >= {BANDWIDTH_TARGET_PERCENT:.0f} % {label}, 1 thread: "
                         f"{len(valid) - len(below)} of {len(valid)}" + (f"; below: {', '.join(below)}." if below
                                                                         else "."))
    scaled = [r for r in rows if "2 threads / 1" in r and r["MiB"] * 2**20 >= BANDWIDTH_CASE_MIN_BYTES]
    if scaled:
        ratios = sorted(r["2 threads / 1"] for r in scaled)
        lines.append(f"2 threads / 1 thread on cases of 8 MiB or more: min {ratios[0]:.2f}x, median "
                     f"{statistics.median(ratios):.2f}x, max {ratios[-1]:.2f}x; >= 1.6x on "
                     f"{sum(x >= 1.6 for x in ratios)} of {len(ratios)}.")
    return lines


def write_report(record: dict, directory: Path, *, name: str = "permute", title: str) -> tuple[Path, Path, Path]:
    """JSON + Markdown (+ HTML) + bar charts: speed-up over NumPy and the peers, and % of copy bandwidth."""
    from qwenkit.core.checkpoint import atomic_write_text
    from qwenkit.core.plots import bar_plot
    from qwenkit.core.report import Report

    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{name}.json"
    atomic_write_text(json_path, json.dumps(record, indent=1))
    rows = summary_rows(record)
    groups = {item["case"]["name"]: item["case"]["group"] for item in record["results"]}
    charts = []
    for part, wanted in (("2-D and 3-D", {"2-D", "3-D"}), ("4-D and more", {"4-D", "6-D", "20-D"})):
        selected = [r for r in rows if groups[r["case"]] in wanted]
        if not selected:
            continue
        bars = {"qwenkit": [r["x NumPy"] for r in selected],
                "qwenkit, np.empty out": [r["x NumPy (np.empty out)"] for r in selected]}
        for label, key in (("torch out.copy_", "x torch copy_"), ("numba", "x numba")):
            if all(key in r for r in selected):
                bars[label] = [r["x NumPy"] / r[key] for r in selected]
        if all("x JAX (alloc)" in r and "x ascontiguousarray (alloc vs alloc)" in r for r in selected):
            bars["JAX jit (alloc, vs ascontiguousarray)"] = [
                r["x ascontiguousarray (alloc vs alloc)"] / r["x JAX (alloc)"] for r in selected]
        slug = "2d3d" if "2-D" in wanted else "nd"
        charts.append((bar_plot(directory / f"{name}_speedup_{slug}.png", [r["case"] for r in selected], bars,
                                logy=True, reference=1.0, ylabel="x NumPy",
                                title=f"Speed-up over NumPy's transposing copy, 1 thread: {part}"),
                       f"Speed-up over NumPy (log scale), 1 thread, {part}: each bar is NumPy's time over the "
                       "contender's; the allocating JAX bar is over np.ascontiguousarray"))
    shown = [r for r in rows if not isinstance(r["% of copy"], str)]
    copy_png = bar_plot(directory / f"{name}_copy_bandwidth.png", [r["case"] for r in shown],
                        {"qwenkit": [r["% of copy"] for r in shown],
                         "NumPy": [r["NumPy % of copy"] for r in shown]}, reference=BANDWIDTH_TARGET_PERCENT,
                        title="Bandwidth as % of the best copy of the same bytes, 1 thread (line: 75 %)",
                        ylabel="% of copy")
    env = record["environment"]
    runs = record.get("runs") or [{"started": record.get("started", "?"), "cases": [],
                                   "load_average_before": record["load_average_before"],
                                   "load_average_after": record["load_average_after"]}]
    report = Report(title)
    report.text("\n".join(f"- {line}" for line in findings(rows)))
    sweep_path = directory / f"{name}_sweep.json"
    if sweep_path.exists():
        sweep = json.loads(sweep_path.read_text())
        report.text(f"{sweep_minimum_line(sweep)} (`{sweep_path.stem}.md`, run {sweep['started']}, load "
                    f"{fmt_load(sweep['load_average_before'])} / {fmt_load(sweep['load_average_after'])})")
    report.text(
        f"Machine: {cpu_text(env)}, {env['cores']} usable cores, ISA `{env['isa']}`, NumPy {env['numpy']}, "
        f"torch {env['torch']} (OpenMP wait policy {env.get('peer_omp_wait_policy', 'not recorded: spinning')}), "
        f"numba {env['numba']}, JAX {env.get('jax')} (CPU, single-threaded XLA). Minimum of "
        f"{record['repeats']} interleaved runs per contender. Bandwidth counts bytes read plus bytes written "
        "(2 x the array) over the same timer for every contender; `% of copy` is against the best plain copy of "
        "the same bytes in the same loop (np.copyto or qwenkit's streaming copy), so above 100 % is a "
        "measurement error and is shown as such. Outputs pre-allocated and pre-touched (qwenkit plan, np.copyto, "
        "torch out.copy_, numba), 64-byte aligned; `np.empty out` runs the same plan into a plain np.empty "
        "output (16 bytes past a cache line); the allocating calls (qwenkit permute(), np.ascontiguousarray, "
        "torch .contiguous(), JAX) are compared with each other, each timed right after memory of its output's "
        "size was faulted in and freed, so that none of them pays for pages the host took back while the others "
        f"ran ({page_reporting_text(env.get('free_page_reporting'))}). x = time of the other / time of qwenkit. "
        "The 2-thread pass times qwenkit with 2 threads against its own 1-thread plan in the same loop.")
    report.text(f"Runs (each a few minutes, {launched_text(env)}; load average before / after):\n"
                + "\n".join(f"- {r['started']}: load {fmt_load(r['load_average_before'])} / "
                            f"{fmt_load(r['load_average_after'])}" + (f" ({', '.join(r['cases'])})"
                                                                     if r.get("cases") else "") for r in runs))
    report.table(rows, _columns(rows), float_format="{:.3g}")
    for chart, caption in charts:
        report.image(chart, caption)
    report.image(copy_png, "Share of the best copy's bandwidth, 1 thread, qwenkit and NumPy (measurement errors "
                           "left out)")
    md_path, _ = report.write(directory, name=name)
    return json_path, md_path, charts[0][0] if charts else copy_png


def _columns(rows: list[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def fmt_load(load) -> str:
    return "/".join(f"{x:.1f}" for x in load) if isinstance(load, list | tuple) else f"{load:.1f}"


def sweep_layouts(max_bytes: int) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """``(layout, shape, axes)`` for float32 from 16 elements up to ``max_bytes``, 4x per step: a square 2-D
    transpose, and NCHW->NHWC (H = W grow to 64, then C to 64, then N)."""
    sizes = []
    n = 4
    while n * n * 4 <= max_bytes:
        sizes.append(("2-D (1,0)", (n, n), (1, 0)))
        n *= 2
    shape = [1, 4, 2, 2]
    while math.prod(shape) * 4 <= max_bytes:
        sizes.append(("4-D NCHW->NHWC", tuple(shape), (0, 2, 3, 1)))
        if shape[2] < 64:
            shape[2] *= 2
            shape[3] *= 2
        elif shape[1] < 64:
            shape[1] *= 4
        else:
            shape[0] *= 4
    return sizes


def run_sweep(max_bytes: int = SWEEP_DEFAULT_MAX_BYTES, *, repeats: int = 5, small_repeats: int = SWEEP_SMALL_REPEATS,
              progress: Callable[[str], None] = print) -> dict:
    """``permute`` as a user calls it against NumPy at every size of ``sweep_layouts``."""
    from qwenkit.permute import permute

    record = {"environment": environment(), "load_average_before": os.getloadavg(), "repeats": repeats,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "max_bytes": max_bytes, "sizes": []}
    for layout, shape, axes in sweep_layouts(max_bytes):
        a = _filled(shape, "float32")
        out = np.zeros(tuple(shape[k] for k in axes), np.float32)
        permute(a, axes, out=out)
        correct = out.tobytes() == np.ascontiguousarray(a.transpose(axes)).tobytes()
        # below 16 MiB a measurement is a few ms: take more of them, the minimum is then robust to other processes
        size_repeats = repeats if a.nbytes >= 16 * 2**20 else max(repeats, small_repeats)
        contenders = _sweep_contenders(a, axes, out)
        seconds, _ = time_interleaved(contenders, size_repeats,
                                      before=fault_in_before(contenders, SWEEP_ALLOCATING_CONTENDERS, a.nbytes))
        entry = {"layout": layout, "shape": shape, "axes": axes, "elements": a.size, "bytes": a.nbytes,
                 "seconds_min": seconds, "correct": correct}
        record["sizes"].append(entry)
        ratios = sweep_ratios(entry)
        progress(f"{layout:16s} {a.size:>11d} elements  " + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
        del a, out
    from qwenkit.permute import planner

    record["call_costs"] = call_costs()
    record["min_kernel_bytes"] = planner.MIN_KERNEL_BYTES
    record["load_average_after"] = os.getloadavg()
    return record


def _signature_only(a, axes=None, out=None, *, threads=None, isa="auto"):
    return out


def call_costs(repeats: int = SWEEP_SMALL_REPEATS) -> dict[str, float]:
    """Seconds per call of the pieces a tiny transpose is made of (16 float32 elements, 4x4, axes (1, 0)) and of
    the kernel path's per-call steps (a float32 transpose of ``planner.MIN_KERNEL_BYTES``, 128 columns), in
    one interleaved loop: what NumPy's own call costs, what a Python function with ``permute``'s signature costs
    before doing anything, and what each check and step of ours adds."""
    from qwenkit.permute import api, permute

    a = _filled((4, 4), "float32")
    out = np.empty((4, 4), np.float32)
    axes = (1, 0)
    view = a.transpose(axes)
    from qwenkit.permute import planner

    rows = max(1, planner.MIN_KERNEL_BYTES // (4 * 128))
    big = _filled((rows, 128), "float32")
    big_out = np.empty((128, rows), np.float32)
    permute(big, axes, out=big_out)
    plan = api._cached_plan(big.shape, big.dtype, big.strides, axes, big_out.strides, None, "auto")
    big_view = big.transpose(axes)
    contenders = {
        "tiny: NumPy's call np.copyto(out, a.transpose(axes))": lambda: np.copyto(out, a.transpose(axes)),
        "tiny: NumPy's call np.ascontiguousarray(a.transpose(axes))": lambda: np.ascontiguousarray(a.transpose(axes)),
        "tiny: a.transpose(axes)": lambda: a.transpose(axes),
        "tiny: np.copyto(out, view)": lambda: np.copyto(out, view),
        "tiny: out[...] = view": lambda: out.__setitem__(Ellipsis, view),
        "tiny: view.copy()": view.copy,
        "tiny: calling a Python function with permute's signature (no body)": lambda: _signature_only(a, axes,
                                                                                                       out=out),
        "tiny: out.shape == view.shape": lambda: out.shape == view.shape,
        "tiny: out.dtype is a.dtype": lambda: out.dtype is a.dtype,
        "tiny: permute(a, axes, out=out)": lambda: permute(a, axes, out=out),
        "tiny: permute(a, axes)": lambda: permute(a, axes),
        "tiny: permute_python(a, axes, out=out) (the short path without the C entry point)":
            lambda: api.permute_python(a, axes, out=out),
        "tiny: permute_python(a, axes)": lambda: api.permute_python(a, axes),
        "kernel path: NumPy's call np.copyto(out, a.transpose(axes))": lambda: np.copyto(big_out, big.transpose(axes)),
        "kernel path: permute(a, axes, out=out)": lambda: permute(big, axes, out=big_out),
        "kernel path: plan look-up": lambda: api._cached_plan(big.shape, big.dtype, big.strides, axes, big_out.strides,
                                                         None, "auto"),
        "kernel path: plan._run (overlap check, pointers, kernel)": lambda: plan._run(big_view, big_out, big),
        "kernel path: np.may_share_memory": lambda: np.may_share_memory(big_view, big_out),
        "kernel path: data pointer by __array_interface__": lambda: big.__array_interface__["data"][0],
    }
    if plan._ffi is not None:  # None where the kernels fell back to NumPy (no working compiler)
        contenders["kernel path: data pointer by ffi.from_buffer"] = lambda: plan._ffi.from_buffer(big)
    seconds, _ = time_interleaved(contenders, repeats)
    return seconds


SWEEP_ALLOCATING_CONTENDERS = ("qwenkit permute(a, axes)", "numpy ascontiguousarray(a.transpose(axes))")


def _sweep_contenders(a: np.ndarray, axes, out: np.ndarray) -> dict[str, Callable[[], object]]:
    from qwenkit.permute import permute

    contenders = {"qwenkit permute(a, axes, out=out)": lambda: permute(a, axes, out=out),
                  "numpy copyto(out, a.transpose(axes))": lambda: np.copyto(out, a.transpose(axes))}
    if a.nbytes <= SWEEP_ALLOCATING_MAX_BYTES:
        contenders["qwenkit permute(a, axes)"] = lambda: permute(a, axes)
        contenders["numpy ascontiguousarray(a.transpose(axes))"] = lambda: np.ascontiguousarray(a.transpose(axes))
    return contenders


def sweep_ratios(entry: dict) -> dict[str, float]:
    t = entry["seconds_min"]
    ratios = {"out=": t["numpy copyto(out, a.transpose(axes))"] / t["qwenkit permute(a, axes, out=out)"]}
    if "qwenkit permute(a, axes)" in t:
        ratios["allocating"] = t["numpy ascontiguousarray(a.transpose(axes))"] / t["qwenkit permute(a, axes)"]
    return ratios


def sweep_minimum(record: dict) -> tuple[float, str, int, str]:
    """``(ratio, layout, elements, kind)`` of the lowest ratio to NumPy over the whole sweep."""
    return min((ratio, e["layout"], e["elements"], kind) for e in record["sizes"]
               for kind, ratio in sweep_ratios(e).items())


def sweep_minimum_line(record: dict) -> str:
    ratio, layout, elements, kind = sweep_minimum(record)
    return (f"Minimum ratio to NumPy over the size sweep: {ratio:.2f}x ({layout}, {elements} elements, "
            f"{kind})")


def write_sweep_report(record: dict, directory: Path, *, name: str = "permute_sweep") -> Path:
    from qwenkit.core.checkpoint import atomic_write_text
    from qwenkit.core.plots import line_plot
    from qwenkit.core.report import Report

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / f"{name}.json", json.dumps(record, indent=1))
    rows = []
    series = {}
    for entry in record["sizes"]:
        t = entry["seconds_min"]
        row = {"layout": entry["layout"], "shape": "x".join(map(str, entry["shape"])), "elements": entry["elements"],
               "bytes": entry["bytes"], "qwenkit out= us": 1e6 * t["qwenkit permute(a, axes, out=out)"],
               "NumPy copyto us": 1e6 * t["numpy copyto(out, a.transpose(axes))"]}
        for kind, ratio in sweep_ratios(entry).items():
            row[f"x NumPy ({kind})"] = ratio
            xs, ys = series.setdefault(f"{entry['layout']}, {kind}", ([], []))
            xs.append(entry["bytes"])
            ys.append(ratio)
        row["correct"] = "yes" if entry["correct"] else "NO"
        rows.append(row)
    chart = line_plot(directory / f"{name}.png", series, logx=True, logy=True, xlabel="array bytes",
                      ylabel="x NumPy", title="permute() as called vs NumPy, float32, 1 thread (auto)")
    report = Report("qwenkit.permute: size sweep")
    report.text(sweep_minimum_line(record))
    report.text(f"Load average before {fmt_load(record['load_average_before'])}, after "
                f"{fmt_load(record['load_average_after'])}; run {record['started']} on "
                f"{cpu_text(record['environment'])}, {launched_text(record['environment'])}; minimum "
                f"of {record['repeats']} interleaved measurements of at least {MIN_MEASURE_S * 1e3:.0f} ms each "
                "(many back-to-back calls for small arrays). `out=`: `permute(a, axes, out=out)` against "
                "`np.copyto(out, a.transpose(axes))`; allocating: `permute(a, axes)` against "
                "`np.ascontiguousarray(a.transpose(axes))` (not run above 256 MiB). Both sides include making the "
                "transposed view, as a user's call does. Threads: permute's default (one per 4 MiB of output).")
    report.table(rows, _columns(rows), float_format="{:.3g}")
    report.image(chart, "Ratio to NumPy at every size (log-log); 1 = NumPy's speed")
    if "call_costs" in record:
        report.text("What one call costs, in one interleaved loop after the sweep (`bench.call_costs`): the pieces "
                    "of a 4x4 float32 transpose, and the per-call steps of the kernel path on a float32 transpose of "
                    "`planner.MIN_KERNEL_BYTES` (where the short path hands over to the kernels), "
                    f"{record.get('min_kernel_bytes', 'its')} bytes.")
        report.table([{"step": k, "ns per call": 1e9 * v} for k, v in record["call_costs"].items()],
                     ["step", "ns per call"], float_format="{:.0f}")
    md_path, _ = report.write(directory, name=name)
    return md_path


PROBE_READS_LABEL = "gather reads alone (the kernel's loads and shuffles, no output stores)"
PROBE_WRITES_LABEL = "scattered writes alone (the kernel's output stores, no input loads)"
NO_PREFETCH_LABEL = "the kernel without its software prefetches (Plan.probe 3)"
STRIPS_OFF_LABEL = "the kernel with macro tiles instead of square strips (Plan.strips off)"
STREAM_READ_LABEL = "streaming read of the same bytes (memory order)"
STREAM_WRITE_LABEL = "streaming write of the same bytes (non-temporal stores)"
ORDINARY_WRITE_LABEL = "ordinary write of the same bytes (each line read for ownership)"
SMALL_PAGES_LABEL = "kernel, input and output on 4 KiB pages (madvise NOHUGEPAGE)"
HUGE_PAGES_LABEL = "kernel, input and output on 2 MiB pages (madvise HUGEPAGE)"
PAGES_MAX_BYTES = 256 * 2**20
"""The page-size experiment makes two more copies of input and output; above this it is skipped (memory)."""


def _anon_huge_bytes() -> int:
    """This process's anonymous memory backed by transparent huge pages (``/proc/self/smaps_rollup``), bytes."""
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _paged_copy(array: np.ndarray, huge: bool) -> tuple[np.ndarray, object]:
    """A copy of ``array`` in its own private anonymous mapping (shared ones are shmem, outside anonymous THP),
    2 MiB-aligned, advised to use huge pages or not to;
    returns the array and the mapping (which must outlive it)."""
    size = array.nbytes
    mapping = mmap.mmap(-1, size + 2 * 2**20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advice = getattr(mmap, "MADV_HUGEPAGE" if huge else "MADV_NOHUGEPAGE", None)
    raw = np.frombuffer(mapping, dtype=np.uint8)
    start = -raw.ctypes.data % (2 * 2**20)
    if advice is not None:
        mapping.madvise(advice, start, size)
    copy = raw[start:start + size].view(array.dtype).reshape(array.shape)
    copy[...] = array
    return copy, mapping


def _two_thread_copyto(dst: np.ndarray, src: np.ndarray) -> Callable[[], None]:
    """``np.copyto`` of the two halves on two threads (NumPy releases the GIL while it copies)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    half = src.size // 2

    def run() -> None:
        pending = pool.submit(np.copyto, dst[half:], src[half:])
        np.copyto(dst[:half], src[:half])
        pending.result()

    return run


def _run_with_plan(a: np.ndarray, axes, out: np.ndarray, plan) -> Callable[[], object]:
    """A one-thread ``PermutePlan`` for ``a`` -> ``out`` made to run ``plan`` (a variant, a probe or another tile
    shape of the planner's own plan), as a call of no arguments."""
    from qwenkit.permute import make_plan

    runner = make_plan(a, axes, out, threads=1)
    runner._use(plan)
    return functools.partial(runner, a, out)


def _checked_run(a: np.ndarray, axes, out: np.ndarray, plan, expected: bytes, what: str) -> Callable[[], object]:
    """``_run_with_plan``, run once into a zeroed ``out`` and checked against NumPy's bytes ``expected``."""
    run = _run_with_plan(a, axes, out, plan)
    out.fill(0)
    run()
    if out.tobytes() != expected:
        raise AssertionError(f"{what} wrote other bytes than NumPy")
    return run


def _experiment_arrays(shape, dtype) -> tuple[np.ndarray, np.ndarray, dict[str, Callable[[], object]]]:
    """An experiment's input, its pre-touched aligned output, and its reference contender: ``np.copyto`` of the
    same bytes into another pre-touched buffer."""
    from qwenkit.permute import empty_aligned

    a = _filled(shape, dtype)
    out = empty_aligned(shape, dtype)
    out.fill(0)
    flat_dst = empty_aligned((a.size,), dtype)
    flat_dst.fill(0)
    return a, out, {"np.copyto": functools.partial(np.copyto, flat_dst, a.reshape(-1))}


def diagnose_case(case: Case, repeats: int = 3) -> dict:
    """Measure what limits one case, in one interleaved loop. This VM exposes no hardware counters, so each
    resource is isolated by an experiment on the same bytes:

    - the kernel's own access pattern split in two halves (``Plan.probe``, streaming tile plans): its gather reads
      and shuffles alone, its scattered (streamed) writes alone, and the whole kernel without its software
      prefetches (what they gain);
    - a pure streaming read and a pure streaming write of the same bytes, and an ordinary write (write-allocate:
      each line is read before it is written): the best each half of the traffic can do on one core;
    - the kernel on input and output placed on 4 KiB pages and on 2 MiB pages (``madvise``): what TLB misses cost;
    - the planner's variants (loop orders, streaming on/off);
    - 2 threads against 1 for the kernel, for ``np.copyto`` (two halves on two threads) and for qwenkit's
      streaming copy: whether the memory system lets a second core add bandwidth at all on this VM.
    ``limit_verdict`` turns the numbers into the limiting resource."""
    import dataclasses

    from qwenkit.permute import empty_aligned, make_plan
    from qwenkit.permute.build import load_kernels
    from qwenkit.permute.planner import STREAM_MODES, plan_variants

    a = _filled(case.shape, case.dtype)
    out = empty_aligned(tuple(case.shape[k] for k in case.axes), case.dtype)
    out.fill(0)
    base = make_plan(a, case.axes, out, threads=1)
    contenders: dict[str, Callable[[], object]] = {}
    labels = []
    for index, variant in enumerate(plan_variants(base.plan)):
        mode = "dense block" if variant.dense else STREAM_MODES[variant.stream]
        mode += ", square strips" if variant.square_strips and not variant.dense else ""
        label = f"variant {index}: outer {variant.outer.shape}, streaming {mode}"
        labels.append(label)
        contenders[label] = _run_with_plan(a, case.axes, out, variant)
    probed = base.plan.kind == "tile" and bool(base.plan.stream or base.plan.dense)
    if probed:
        for probe, label in ((codegen.PROBE_READS, PROBE_READS_LABEL), (codegen.PROBE_WRITES, PROBE_WRITES_LABEL),
                             (codegen.PROBE_NO_PREFETCH, NO_PREFETCH_LABEL)):
            contenders[label] = _run_with_plan(a, case.axes, out, dataclasses.replace(base.plan, probe=probe))
    if base.plan.strips:
        contenders[STRIPS_OFF_LABEL] = _run_with_plan(a, case.axes, out, dataclasses.replace(base.plan, strips=False))
    two = make_plan(a, case.axes, out, threads=2)
    contenders["qwenkit 2 threads"] = functools.partial(two, a, out)
    flat_src, flat_dst = a.reshape(-1), out.reshape(-1)
    copies = {threads: make_plan(flat_src, None, flat_dst, threads=threads) for threads in (1, 2)}
    contenders["copy: np.copyto"] = functools.partial(np.copyto, flat_dst, flat_src)
    contenders["copy: np.copyto 2 threads"] = _two_thread_copyto(flat_dst, flat_src)
    contenders["copy: qwenkit 1 thread"] = functools.partial(copies[1], flat_src, flat_dst)
    contenders["copy: qwenkit 2 threads"] = functools.partial(copies[2], flat_src, flat_dst)
    kernels = load_kernels(base.isa, 1)
    if kernels is not None:
        pointer_a, pointer_b = kernels.ffi.from_buffer(a), kernels.ffi.from_buffer(out)
        contenders[STREAM_READ_LABEL] = functools.partial(kernels.lib.qk_probe_read, pointer_a, a.nbytes)
        contenders[STREAM_WRITE_LABEL] = functools.partial(kernels.lib.qk_probe_write, pointer_b, a.nbytes, 1)
        contenders[ORDINARY_WRITE_LABEL] = functools.partial(kernels.lib.qk_probe_write, pointer_b, a.nbytes, 0)
    contenders["read only (input, memory order)"] = functools.partial(
        np.bitwise_or.reduce, a.reshape(-1).view(np.uint8)[: a.nbytes // 8 * 8].view(np.uint64))
    contenders["write only (output fill)"] = functools.partial(out.fill, 0)
    keep = []
    huge_obtained = None
    if a.nbytes <= PAGES_MAX_BYTES:
        before = _anon_huge_bytes()
        for huge, label in ((False, SMALL_PAGES_LABEL), (True, HUGE_PAGES_LABEL)):
            paged_a, map_a = _paged_copy(a, huge)
            paged_out, map_out = _paged_copy(out, huge)
            keep += [map_a, map_out]
            plan = make_plan(paged_a, case.axes, paged_out, threads=1)
            contenders[label] = functools.partial(plan, paged_a, paged_out)
        huge_obtained = _anon_huge_bytes() - before
    seconds, _ = time_interleaved(contenders, repeats)
    contenders.clear()
    del keep
    one_sided = (STREAM_READ_LABEL, STREAM_WRITE_LABEL, ORDINARY_WRITE_LABEL, "read only", "write only")
    gbs = {k: (1 if k.startswith(one_sided) else 2) * case.nbytes / v / 1e9 for k, v in seconds.items()}
    default = seconds[labels[0]]
    best_copy = min(seconds["copy: np.copyto"], seconds["copy: qwenkit 1 thread"])
    entry = {"case": asdict(case), "bytes": case.nbytes, "seconds_min": seconds, "GB/s": gbs, "variants": labels,
             "plan": base.describe(), "probed": probed, "huge_pages_obtained_bytes": huge_obtained,
             "default % of copy": 100 * best_copy / default,
             "default % of np.copyto": 100 * seconds["copy: np.copyto"] / default,
             "best variant % of copy": 100 * best_copy / min(seconds[k] for k in labels),
             "kernel 2T/1T": default / seconds["qwenkit 2 threads"],
             "copy 2T/1T": seconds["copy: qwenkit 1 thread"] / seconds["copy: qwenkit 2 threads"],
             "np.copyto 2T/1T": seconds["copy: np.copyto"] / seconds["copy: np.copyto 2 threads"]}
    entry["verdict"] = limit_verdict(entry)
    return entry


NOT_OVERLAPPED_SHARE = 0.9
"""``limit_verdict``: the kernel's reads alone and its writes alone taking together at least this share of its time
means that the two halves hardly overlap (ours; on the Xeon their sum was 90-103 % of the kernel in every streaming
tile case once the writes-alone probe stopped fetching the input)."""


LIMIT_NOT_ISOLATED = "the limit not isolated by these experiments"
"""The one-thread verdict where no experiment names a resource (the report then does not say "limited by")."""


def limit_verdict(entry: dict) -> dict[str, str]:
    """From ``diagnose_case``'s times: the resource that limits one thread (``"1 thread"``) and what limits two
    (``"2 threads"``), each a sentence with the measured numbers. The rules (ours): the half of the traffic
    whose kernel-pattern run alone takes the larger share of the kernel's time is the limit when that share is
    at least 60 %; when the two halves alone add up to at least ``NOT_OVERLAPPED_SHARE`` of the kernel's time,
    they run in turn, not overlapped, and the verdict says so; 2 MiB pages that speed the kernel up by 10 % or
    more name the TLB; an ordinary write slower than a streaming one names write-allocate for kernels that store
    ordinarily; a second thread is limited by the memory system when a plain copy itself gains less than 1.6x
    from it."""
    t = entry["seconds_min"]
    kernel = t[entry["variants"][0]]
    parts = []
    limit = None
    if PROBE_READS_LABEL in t and PROBE_WRITES_LABEL in t:
        reads, writes = t[PROBE_READS_LABEL] / kernel, t[PROBE_WRITES_LABEL] / kernel
        sides = (f"gather reads alone take {100 * reads:.0f} % of the kernel's time, its writes alone "
                 f"{100 * writes:.0f} %")
        if STREAM_READ_LABEL in t:
            sides += (f" (a streaming read of the same bytes {100 * t[STREAM_READ_LABEL] / kernel:.0f} %, "
                      f"a streaming write {100 * t[STREAM_WRITE_LABEL] / kernel:.0f} %)")
        if "copy: np.copyto" in t:
            sides += f"; np.copyto of the same bytes takes {100 * t['copy: np.copyto'] / kernel:.0f} %"
        parts.append(sides)
        in_turn = reads + writes >= NOT_OVERLAPPED_SHARE
        together = f"together {100 * (reads + writes):.0f} % of the kernel's time"
        if max(reads, writes) >= 0.6:
            limit = "loads (the gather reads)" if reads >= writes else "stores (the scattered writes)"
            if in_turn:
                limit += f", in turn with the {'stores' if reads >= writes else 'loads'} (not overlapped: {together})"
        elif in_turn:
            limit = f"the loads and the stores in turn (not overlapped: {together})"
        else:
            limit = "neither half alone: the loads and stores together (per-core issue and their overlap)"
    else:
        parts.append("no probe split (not a streaming tile plan)")
    if SMALL_PAGES_LABEL in t and HUGE_PAGES_LABEL in t:
        gain = t[SMALL_PAGES_LABEL] / t[HUGE_PAGES_LABEL]
        obtained = entry.get("huge_pages_obtained_bytes") or 0
        parts.append(f"2 MiB pages run it {gain:.2f}x as fast as 4 KiB pages ({obtained / 2**20:.0f} MiB of huge "
                     "pages obtained)")
        if gain >= 1.1:
            limit = f"{limit}, with TLB misses" if limit else "TLB misses"
    if ORDINARY_WRITE_LABEL in t:
        allocate = t[ORDINARY_WRITE_LABEL] / t[STREAM_WRITE_LABEL]
        parts.append(f"an ordinary write costs {allocate:.2f}x a streaming one (write-allocate)")
        if allocate >= 1.1 and "streaming off" in entry["variants"][0]:
            limit = f"{limit}, and write-allocate" if limit else "write-allocate"
    one = f"{limit or LIMIT_NOT_ISOLATED}: " + "; ".join(parts)
    copy_gain = max(entry["copy 2T/1T"], entry["np.copyto 2T/1T"])
    two = (f"kernel 2T/1T {entry['kernel 2T/1T']:.2f}x; np.copyto 2T/1T {entry['np.copyto 2T/1T']:.2f}x, "
           f"qwenkit copy 2T/1T {entry['copy 2T/1T']:.2f}x")
    if entry["kernel 2T/1T"] >= 1.6:
        two = "meets 1.6x: " + two
    elif copy_gain < 1.6:
        two = "the memory system (a plain copy itself gains less than 1.6x from a second core): " + two
    else:
        two = "per-core work that does not split well (the copy scales, the kernel does not): " + two
    return {"1 thread": one, "2 threads": two}


STRIDE_EXPERIMENT_ROW_ELEMENTS = (2048, 4096, 8192, 16384, 32768, 65536)
"""Input row lengths of the stride experiment (float32 elements): rows 8 KiB to 256 KiB apart."""
STRIDE_EXPERIMENT_BYTES = 64 * 2**20
STRIDE_PAD_ELEMENTS = 16
"""The padded input: each row 64 bytes (one cache line) longer than it is wide, a view of a wider array."""


def stride_experiment(repeats: int = 5, row_elements: tuple[int, ...] = STRIDE_EXPERIMENT_ROW_ELEMENTS,
                      total_bytes: int = STRIDE_EXPERIMENT_BYTES) -> list[dict]:
    """How far apart the input rows are, against how fast the tile kernel reads them: 2-D float32 transposes of
    the same 64 MiB, ``(rows, C)`` for each ``C`` of ``STRIDE_EXPERIMENT_ROW_ELEMENTS``, each also with its rows
    padded by one cache line (``STRIDE_PAD_ELEMENTS``), which moves the rows onto other cache sets and DRAM
    columns. Per layout, in one interleaved loop: the kernel, its gather reads alone and its writes alone
    (``Plan.probe``), and ``np.copyto`` of the same bytes. The matrix's 3-D (1, 2, 0) layout is such a transpose
    with input rows 256 KiB apart."""
    import dataclasses

    from qwenkit.permute import empty_aligned, make_plan

    rows_out = []
    for columns in row_elements:
        rows = total_bytes // 4 // columns
        for pad in (0, STRIDE_PAD_ELEMENTS):
            a = _filled((rows, columns + pad), "float32")[:, :columns]
            out = empty_aligned((columns, rows), "float32")
            out.fill(0)
            flat_src, flat_dst = np.ascontiguousarray(a).reshape(-1), out.reshape(-1)
            base = make_plan(a, (1, 0), out, threads=1)
            contenders = {"kernel": functools.partial(base, a, out),
                          "np.copyto": functools.partial(np.copyto, flat_dst, flat_src)}
            if base.plan.kind == "tile" and base.plan.stream:
                for probe, label in ((codegen.PROBE_READS, "reads alone"), (codegen.PROBE_WRITES, "writes alone")):
                    contenders[label] = _run_with_plan(a, (1, 0), out, dataclasses.replace(base.plan, probe=probe))
            seconds, _ = time_interleaved(contenders, repeats)
            copy = seconds["np.copyto"]
            rows_out.append({
                "input rows apart (KiB)": a.strides[0] / 1024, "output rows apart (KiB)": out.strides[0] / 1024,
                "padded": bool(pad), "kernel % of np.copyto": 100 * copy / seconds["kernel"],
                "reads alone % of np.copyto time": 100 * seconds.get("reads alone", math.nan) / copy,
                "writes alone % of np.copyto time": 100 * seconds.get("writes alone", math.nan) / copy,
                "plan": base.describe().splitlines()[1]})
    return rows_out


TILE_EXPERIMENT_VARIANTS: dict[str, tuple[tuple[int, int, bool], ...]] = {
    "uint8": ((1024, 128, False), (128, 64, True), (256, 64, True), (64, 64, True)),
    "int16": ((256, 128, True), (128, 64, True), (64, 64, True), (64, 128, True)),
    "float32": ((128, 128, True), (128, 64, True), (256, 128, True), (64, 128, True)),
    "float64": ((256, 256, True), (128, 128, True), (256, 128, True), (128, 64, True)),
    "complex128": ((256, 512, True), (256, 128, True), (128, 128, True), (256, 256, True))}
"""Per dtype: macro tile shapes (input-row bytes, output-row bytes, column order) timed against each other;
the first is the shape before commit 967278f, the second (for uint8, float64, complex128) or first (int16,
float32) the one ``planner.TILE_SHAPES`` holds now."""


def tile_shape_experiment(side: int = 8192, repeats: int = 7, variants=None) -> list[dict]:
    """Macro tile shapes of the square ``side``-by-``side`` transpose, per dtype, in one interleaved loop with
    ``np.copyto`` of the same bytes (medians, not minima: the shapes differ by less than this VM's run-to-run
    spread), and each column-order shape once more without the software prefetches (``Plan.probe`` 3). Every variant
    writes the same bytes (checked)."""
    import dataclasses

    from qwenkit.permute import make_plan
    from qwenkit.permute.planner import TILE_SHAPES

    rows = []
    for dtype, shapes in (variants or TILE_EXPERIMENT_VARIANTS).items():
        a, out, contenders = _experiment_arrays((side, side), dtype)
        base = make_plan(a, (1, 0), out, threads=1)
        width = base.plan.width
        expected = np.ascontiguousarray(a.T).tobytes()
        labels = {}
        for tp_bytes, tq_bytes, column_order in shapes:
            for probe in (0, codegen.PROBE_NO_PREFETCH) if column_order else (0,):
                label = (f"{tp_bytes} x {tq_bytes} B, {'column' if column_order else 'row'} order"
                         + (", prefetch off" if probe else ""))
                contenders[label] = _checked_run(a, (1, 0), out, dataclasses.replace(
                    base.plan, tp=tp_bytes // width, tq=tq_bytes // width, column_order=column_order, probe=probe),
                    expected, f"tile shape {label}")
                labels[label] = (tp_bytes, tq_bytes, column_order), probe
        _, medians = time_interleaved(contenders, repeats)
        for label, (shape, probe) in labels.items():
            rows.append({"dtype": dtype, "tile": label, "default now": shape == TILE_SHAPES[width] and not probe,
                         "ms": 1e3 * medians[label],
                         "% of np.copyto": 100 * medians["np.copyto"] / medians[label]})
    return rows


TILE_TABLE_CANDIDATES: tuple[tuple[int, int, bool], ...] = tuple(
    (tp_bytes, tq_bytes, True) for tp_bytes in (64, 128, 256, 512) for tq_bytes in (64, 128, 256, 512))
"""Rows of ``planner.TILE_SHAPE_TABLES`` timed by ``tile_table_experiment``: 64-512 bytes of each input row, 64-512
bytes of each output row (whole cache lines, as the streaming tiles need), column order (the planner shrinks a tile
that would overflow the buffer); every entry of the existing tables is among them."""


def tile_table_experiment(repeats: int = 5, candidates=TILE_TABLE_CANDIDATES, cases=None) -> list[dict]:
    """Every candidate table entry on every case of the matrix (``full_cases``) of 8 MiB or more that the planner
    tiles: the case is planned with the candidate as its element width's entry (``planner.TILE_SHAPES`` overridden,
    so the planner's other rules, the L2 alias cut and the stream modes, apply as they would), into a pre-touched
    64-byte-aligned output and into a plain np.empty output, in one interleaved loop per case with np.copyto of the
    same bytes and NumPy's copy into each output (medians). The table's own entry also runs into the np.empty output
    with the other choice of ``planner.WHOLE_ROW_STRIPS`` ("np.empty, other row strips"). Every variant writes NumPy's
    bytes (checked)."""
    import dataclasses

    from qwenkit.permute import empty_aligned, make_plan, planner

    rows = []
    for case in cases if cases is not None else full_cases():
        if case.nbytes < BANDWIDTH_CASE_MIN_BYTES and cases is None:
            continue
        a = _filled(case.shape, case.dtype)
        view = a.transpose(case.axes)
        out = empty_aligned(view.shape, case.dtype)
        if make_plan(a, case.axes, out, threads=1).plan.kind != "tile":
            continue
        user_out, flat_dst = np.empty(view.shape, case.dtype), empty_aligned((a.size,), case.dtype)
        for buffer in (out, user_out, flat_dst):
            buffer.fill(0)
        contenders = {"np.copyto": functools.partial(np.copyto, flat_dst, a.reshape(-1))}
        expected = np.ascontiguousarray(view).tobytes()
        contenders["NumPy, aligned"] = functools.partial(np.copyto, out, view)
        contenders["NumPy, np.empty"] = functools.partial(np.copyto, user_out, view)
        width = planner.element_width(a.itemsize)
        labels = []
        for shape in candidates:
            saved = planner.TILE_SHAPES
            planner.TILE_SHAPES = {**planner.tile_shapes(), width: shape}
            try:
                plans = {kind: make_plan(a, case.axes, target, threads=1).plan
                         for kind, target in (("aligned", out), ("np.empty", user_out))}
            finally:
                planner.TILE_SHAPES = saved
            if shape == planner.tile_shapes()[width] and plans["np.empty"].kind == "tile":
                plans["np.empty, other row strips"] = dataclasses.replace(
                    plans["np.empty"], whole_row_strips=not plans["np.empty"].whole_row_strips)
            for kind, plan in plans.items():
                label = f"{shape[0]} x {shape[1]} B, {kind}"
                contenders[label] = _checked_run(a, case.axes, out if kind == "aligned" else user_out, plan,
                                                 expected, f"{case.name} {label}")
                labels.append((label, shape, kind, plan))
        _, medians = time_interleaved(contenders, repeats)
        for label, shape, kind, plan in labels:
            numpy_label = "NumPy, aligned" if kind == "aligned" else "NumPy, np.empty"
            rows.append({"case": case.name, "width": width, "tile": f"{shape[0]} x {shape[1]} B", "output": kind,
                         "in table now": shape == planner.tile_shapes()[width],
                         "macro tile (elements)": f"{plan.tp} x {plan.tq}", "ms": 1e3 * medians[label],
                         "% of np.copyto": 100 * medians["np.copyto"] / medians[label],
                         "x NumPy": medians[numpy_label] / medians[label]})
    return rows


def tile_table_summary(rows: list[dict]) -> list[dict]:
    """Per element width and candidate: the geometric mean of ``% of np.copyto`` over the cases and both outputs,
    and the lowest ratio to NumPy, with the candidate of the highest mean marked (the rows with the other row-strip
    choice left out)."""
    groups: dict[tuple[int, str], list[dict]] = {}
    for row in rows:
        if row["output"] not in ("aligned", "np.empty"):
            continue
        groups.setdefault((row["width"], row["tile"]), []).append(row)
    summary = [{"width": width, "tile": tile, "cases": len({r["case"] for r in group}),
                "in table now": group[0]["in table now"],
                "geomean % of np.copyto": statistics.geometric_mean([r["% of np.copyto"] for r in group]),
                "min x NumPy": min(r["x NumPy"] for r in group)} for (width, tile), group in sorted(groups.items())]
    for width in {row["width"] for row in summary}:
        best = max((row for row in summary if row["width"] == width), key=lambda r: r["geomean % of np.copyto"])
        for row in summary:
            if row["width"] == width:
                row["best mean"] = row is best
    return summary


ALIAS_EXPERIMENT_AXES: tuple[tuple[int, ...], ...] = ((1, 2, 0), (2, 1, 0))
"""The 3-D float32 permutations whose input rows lie ``side**2`` elements apart: with ``side=256``, 256 KiB, a
multiple of the L2's set span, so every row of a tile maps to one set."""


def alias_experiment(side: int = 256, repeats: int = 7, axes_list=ALIAS_EXPERIMENT_AXES) -> list[dict]:
    """``planner._alias_free_tq`` and the long p side it comes with, on and off, in one interleaved loop with
    ``np.copyto`` of the same bytes (medians). "off" plans as if the L2 had unlimited ways; "fewer rows only" is the
    "off" plan with the tile's rows cut as "on" cuts them; "on" runs once more without the software prefetches
    (``Plan.probe`` 3). Every variant writes the same bytes (checked)."""
    import dataclasses
    from unittest import mock

    from qwenkit.core import system
    from qwenkit.permute import make_plan

    sets, _, line = system.l2_cache_geometry()
    rows = []
    for axes in axes_list:
        a, out, contenders = _experiment_arrays((side,) * 3, "float32")
        on = make_plan(a, axes, out, threads=1).plan
        with mock.patch.object(system, "l2_cache_geometry", lambda: (sets, 2**62, line)):
            off = make_plan(a, axes, out, threads=1).plan
        variants = {"on (the planner)": on,
                    "on, prefetch off": dataclasses.replace(on, probe=codegen.PROBE_NO_PREFETCH),
                    "off": off, "fewer rows only": dataclasses.replace(off, tq=on.tq)}
        expected = np.ascontiguousarray(a.transpose(axes)).tobytes()
        for label, plan in variants.items():
            contenders[label] = _checked_run(a, axes, out, plan, expected, f"{axes} {label}")
        _, medians = time_interleaved(contenders, repeats)
        for label, plan in variants.items():
            rows.append({"axes": str(axes), "rule": label, "rows a tile": plan.tq,
                         "input run per column (bytes)": plan.pb.size * plan.width, "ms": 1e3 * medians[label],
                         "% of np.copyto": 100 * medians["np.copyto"] / medians[label]})
    return rows


SPAN_EXPERIMENT_LAYOUTS: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
    ((1, 2048, 32, 32), (0, 2, 1, 3)), ((4, 1024, 8, 64), (0, 2, 1, 3)), ((8, 2048, 32, 80), (0, 2, 1, 3)),
    ((8, 2048, 32, 96), (0, 2, 1, 3)), ((8, 2048, 32, 128), (0, 2, 1, 3)), ((8, 1024, 32, 160), (0, 2, 1, 3)),
    ((256, 256, 256), (1, 0, 2)), ((2, 1024, 32, 512), (0, 2, 1, 3)), ((8, 32, 2048, 128), (0, 2, 1, 3)),
    ((8, 32, 1024, 96), (0, 2, 1, 3)))
"""float32 row copies whose next-outer axis continues each run in the output (BSHD->BHSD with head sizes of 32-512
elements, 3-D (1, 0, 2), and BHSD->BSHD, whose long position axis the planner cuts into blocks): runs of 128 bytes to
2 KiB."""


def span_experiment(repeats: int = 5, layouts=SPAN_EXPERIMENT_LAYOUTS) -> list[dict]:
    """Row copies into a plain ``np.empty`` output (16 bytes past a cache line) with their runs streamed in spans
    (``Plan.spans``) and one by one, against NumPy's copy into the same output and the span plan into an aligned
    output, in one interleaved loop per layout (medians). Every variant writes the same bytes (checked)."""
    import dataclasses

    from qwenkit.permute import empty_aligned, make_plan

    rows = []
    for shape, axes in layouts:
        a = _filled(shape, "float32")
        out_shape = tuple(shape[k] for k in axes)
        user_out, aligned_out = np.empty(out_shape, np.float32), empty_aligned(out_shape, np.float32)
        user_out.fill(0)
        aligned_out.fill(0)
        expected = np.ascontiguousarray(a.transpose(axes)).tobytes()
        plan = make_plan(a, axes, user_out, threads=1).plan
        spans = dataclasses.replace(plan, spans=True)
        contenders = {"spans": _checked_run(a, axes, user_out, spans, expected, f"{shape} spans"),
                      "run by run": _checked_run(a, axes, user_out, dataclasses.replace(plan, spans=False), expected,
                                                 f"{shape} run by run"),
                      "aligned": _checked_run(a, axes, aligned_out, spans, expected, f"{shape} aligned"),
                      "numpy": functools.partial(np.copyto, user_out, a.transpose(axes))}
        _, medians = time_interleaved(contenders, repeats)
        rows.append({"shape": str(shape), "axes": str(axes), "run bytes": plan.row_bytes,
                     "planner spans": plan.spans,
                     "x NumPy, spans": medians["numpy"] / medians["spans"],
                     "x NumPy, run by run": medians["numpy"] / medians["run by run"],
                     "x NumPy, aligned output": medians["numpy"] / medians["aligned"]})
    return rows


def write_span_report(rows: list[dict], directory: Path, record_info: dict, *, name: str = "permute_spans") -> Path:
    from qwenkit.core.checkpoint import atomic_write_text
    from qwenkit.core.report import Report

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / f"{name}.json", json.dumps({**record_info, "rows": rows}, indent=1))
    report = Report("qwenkit.permute: row copies streamed in spans")
    report.text(f"Run {record_info['started']} on {cpu_text(record_info)}, {launched_text(record_info)}; load average "
                f"before {fmt_load(record_info['load_average_before'])}, after "
                f"{fmt_load(record_info['load_average_after'])}. `bench.span_experiment`: float32 row copies into "
                "a plain np.empty output (16 bytes past a cache line), their runs streamed in spans of several runs "
                "(`Plan.spans`) and one by one, and the span plan into a 64-byte-aligned output, against NumPy's "
                f"copy into the np.empty output; one interleaved loop per layout, median of {record_info['repeats']} "
                "rounds, 1 thread. `planner spans`: the planner streams this layout in spans "
                "(`planner.SPAN_RUN_BYTES`).")
    report.table(rows, list(rows[0]), float_format="{:.3g}")
    md_path, _ = report.write(directory, name=name)
    return md_path


def write_tile_report(rows: list[dict], directory: Path, record_info: dict, *, name: str = "permute_tiles",
                      alias_rows: list[dict] | None = None) -> Path:
    from qwenkit.core.checkpoint import atomic_write_text
    from qwenkit.core.report import Report

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / f"{name}.json",
                      json.dumps({**record_info, "rows": rows, "alias_rows": alias_rows or []}, indent=1))
    report = Report("qwenkit.permute: macro tile shapes of the square transpose")
    report.text(f"Run {record_info['started']} on {cpu_text(record_info)}, {launched_text(record_info)}; load average "
                f"before {fmt_load(record_info['load_average_before'])}, after "
                f"{fmt_load(record_info['load_average_after'])}. `bench.tile_shape_experiment`: every shape of "
                "one dtype and np.copyto of the same bytes in one interleaved loop, median of "
                f"{record_info['repeats']} rounds, 1 thread, streaming as planned; a row \"prefetch off\" runs "
                "the shape above it without the kernel's software prefetches (`Plan.probe` 3). `default now` marks "
                "`planner.TILE_SHAPES`.")
    report.table(rows, list(rows[0]), float_format="{:.3g}")
    if alias_rows:
        sets, ways, line = record_info.get("l2", (0, 0, 0))
        report.text(f"**Input rows that alias in the L2** ({sets} sets x {ways} ways x {line} B here): "
                    "`bench.alias_experiment`, 256^3 float32, `planner._alias_free_tq` and the long p side on and "
                    "off, same loop discipline.")
        report.table(alias_rows, list(alias_rows[0]), float_format="{:.3g}")
    md_path, _ = report.write(directory, name=name)
    return md_path


def alias_cut_text(record_info: dict) -> str:
    """The tile-table report's words on the L2 alias cut (``planner.ALIAS_CUT``) in the run, where it was recorded."""
    if "alias_cut" not in record_info:
        return ""
    how = "forced for this run" if record_info.get("alias_cut_forced") else "as the table says"
    return f" L2 alias cut (`planner.ALIAS_CUT`): {'on' if record_info['alias_cut'] else 'off'}, {how}."


def write_tile_table_report(rows: list[dict], directory: Path, record_info: dict,
                            *, name: str = "permute_tile_table") -> Path:
    from qwenkit.core.checkpoint import atomic_write_text
    from qwenkit.core.report import Report

    directory.mkdir(parents=True, exist_ok=True)
    summary = tile_table_summary(rows)
    atomic_write_text(directory / f"{name}.json",
                      json.dumps({**record_info, "rows": rows, "summary": summary}, indent=1))
    report = Report("qwenkit.permute: candidate macro tile shapes on every tiled case")
    report.text(f"Run {record_info['started']} on {cpu_text(record_info)}, {launched_text(record_info)}; load average "
                f"before {fmt_load(record_info['load_average_before'])}, after "
                f"{fmt_load(record_info['load_average_after'])}. `bench.tile_table_experiment`: each case of the "
                "matrix of 8 MiB or more that the planner tiles, planned with each candidate as its element width's "
                "entry of the tile table, into an aligned and a plain np.empty output, one interleaved loop per "
                f"case, median of {record_info['repeats']} rounds, 1 thread. `in table now`: the entry of this "
                f"machine's table (`{record_info.get('table', '?')}`) when the run was made."
                + alias_cut_text(record_info))
    report.text("**Per element width** (geometric mean over the cases and both outputs; `best mean` marks the "
                "highest):")
    report.table(summary, list(summary[0]), float_format="{:.3g}")
    report.text("**Every case:**")
    report.table(rows, list(rows[0]), float_format="{:.3g}")
    md_path, _ = report.write(directory, name=name)
    return md_path


def write_diagnosis_report(entries: list[dict], directory: Path, record_info: dict,
                           *, name: str = "permute_limits", strides: list[dict] | None = None) -> Path:
    from qwenkit.core.checkpoint import atomic_write_text
    from qwenkit.core.report import Report

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / f"{name}.json",
                      json.dumps({**record_info, "cases": entries, "strides": strides or []}, indent=1))
    report = Report("qwenkit.permute: what limits the cases below the bandwidth and threading targets")
    report.text(f"Load average before {fmt_load(record_info['load_average_before'])}, after "
                f"{fmt_load(record_info['load_average_after'])}; run {record_info['started']} on "
                f"{cpu_text(record_info) if 'cpu' in record_info else 'the machine of permute.json'}, "
                f"{launched_text(record_info)}. GB/s count "
                "bytes read plus written (the one-sided probes: their one side). "
                + ("This machine exposes hardware performance counters, but each resource is isolated"
                   if record_info.get("cpu_pmu") else
                   "This VM exposes no hardware performance counters (no `cpu` PMU in `/sys/bus/event_source`), "
                   "so each resource is isolated")
                + " by an experiment on the same bytes in one interleaved loop "
                "(`bench.diagnose_case`; the verdict's rules: `bench.limit_verdict`). Cases: those of 8 MiB or more "
                f"below {BANDWIDTH_TARGET_PERCENT:.0f} % of np.copyto or below 1.6x with 2 threads in permute.json.")
    rows = []
    for entry in entries:
        g = entry["GB/s"]
        row = {"case": entry["case"]["name"], "MiB": entry["bytes"] / 2**20,
               "kernel GB/s": g[entry["variants"][0]], "% of np.copyto": entry["default % of np.copyto"],
               "best variant % of copy": entry["best variant % of copy"]}
        t = entry["seconds_min"]
        kernel = t[entry["variants"][0]]
        for label, column in ((PROBE_READS_LABEL, "reads alone % of kernel time"),
                              (PROBE_WRITES_LABEL, "writes alone % of kernel time")):
            row[column] = 100 * t[label] / kernel if label in t else "-"
        row["prefetch off, kernel time x"] = t[NO_PREFETCH_LABEL] / kernel if NO_PREFETCH_LABEL in t else "-"
        row["strips off, kernel time x"] = t[STRIPS_OFF_LABEL] / kernel if STRIPS_OFF_LABEL in t else "-"
        for label, column in ((STREAM_READ_LABEL, "stream read GB/s"), (STREAM_WRITE_LABEL, "stream write GB/s"),
                              (ORDINARY_WRITE_LABEL, "ordinary write GB/s")):
            row[column] = g.get(label, "-")
        row["2 MiB / 4 KiB pages"] = (t[SMALL_PAGES_LABEL] / t[HUGE_PAGES_LABEL] if HUGE_PAGES_LABEL in t else "-")
        row["kernel 2T/1T"] = entry["kernel 2T/1T"]
        row["np.copyto 2T/1T"] = entry["np.copyto 2T/1T"]
        row["qwenkit copy 2T/1T"] = entry["copy 2T/1T"]
        rows.append(row)
    report.table(rows, _columns(rows), float_format="{:.3g}")
    for entry in entries:
        verdict = entry["verdict"]
        one_thread = verdict["1 thread"]
        if not one_thread.startswith(LIMIT_NOT_ISOLATED):
            one_thread = f"limited by {one_thread}"
        report.text(f"**{entry['case']['name']}** — 1 thread, {one_thread}. "
                    f"2 threads: {verdict['2 threads']}.")
    for entry in entries:
        g = entry["GB/s"]
        report.text(f"{entry['case']['name']} variants: "
                    + "; ".join(f"{k} {g[k]:.2f} GB/s" for k in entry["variants"]))
    if strides:
        report.text("**Input row stride** (`bench.stride_experiment`): 2-D float32 transposes of the same 64 MiB, "
                    "the input's rows further and further apart, each also with its rows padded by one cache line "
                    "(other cache sets and DRAM columns); the kernel, its reads alone and its writes alone against "
                    "np.copyto of the same bytes, in one interleaved loop per layout. A probe's time is given as "
                    "a share of np.copyto's time (100 % = as long as the whole copy).")
        report.table([{k: v for k, v in row.items() if k != "plan"} for row in strides],
                     [k for k in strides[0] if k != "plan"], float_format="{:.3g}")
    md_path, _ = report.write(directory, name=name)
    return md_path
