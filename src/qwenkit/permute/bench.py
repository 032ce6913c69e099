"""The permutation benchmark: qwenkit against NumPy, torch and numba, side by side, interleaved, in one run.

Every contender writes the same permuted array; each repetition times all of them in turn (so machine noise hits
them alike) and the report keeps the minimum and the median. The ceiling is ``np.copyto`` of the same number of
contiguous bytes. Speed-ups are ratios of minima measured in the same loop. The load average is recorded before and
after, because the machine this was built on is shared.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qwenkit.core.system import machine_summary


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


def full_cases(seed: int = 0) -> list[Case]:
    """The issue's matrix: 2-D, all 3-D permutations, NCHW<->NHWC, attention, TTC 6-D, random 6-D, 20-D."""
    cases = [Case(f"2-D {n}^2 {dt}", (n, n), dt, (1, 0), "2-D") for n in (8192, 8000)
             for dt in ("uint8", "int16", "float32", "float64", "complex128")]
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

    def speedup(self, contender: str, over: str = "numpy copyto") -> float:
        return self.seconds_min[over] / self.seconds_min[contender]

    def percent_of_copy(self, contender: str = "qwenkit") -> float:
        return 100.0 * self.seconds_min["copy (ceiling)"] / self.seconds_min[contender]

    def to_json(self) -> dict:
        return {"case": asdict(self.case), "bytes": self.case.nbytes, "threads": self.threads,
                "seconds_min": self.seconds_min, "seconds_median": self.seconds_median, "plan": self.plan,
                "correct": self.correct, "threads_used": self.threads_used}


def _contenders(case: Case, threads: int, *, with_numba: bool) -> tuple[dict[str, Callable[[], object]], object, bool]:
    from qwenkit.permute import empty_aligned, make_plan, permute

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=case.nbytes, dtype=np.uint8).view(case.dtype).reshape(case.shape)
    out_shape = tuple(case.shape[k] for k in case.axes)
    view = a.transpose(case.axes)
    out = empty_aligned(out_shape, case.dtype)
    out.fill(0)  # pre-touched: every contender with an output writes into mapped pages
    flat_src = a.reshape(-1)
    flat_dst = empty_aligned((a.size,), case.dtype)
    flat_dst.fill(0)
    plan = make_plan(a, case.axes, out, threads=threads)
    plan(a, out)
    # What a user's np.empty gives: large arrays start 16 bytes past a cache line, which the streaming paths must
    # handle as fast as an aligned output.
    user_out = np.empty(out_shape, case.dtype)
    user_out.fill(0)
    user_plan = make_plan(a, case.axes, user_out, threads=threads)
    user_plan(a, user_out)
    correct = out.tobytes() == np.ascontiguousarray(view).tobytes() == user_out.tobytes()
    contenders: dict[str, Callable[[], object]] = {
        "qwenkit": lambda: plan(a, out),
        "qwenkit into np.empty out": lambda: user_plan(a, user_out),
        "qwenkit permute() allocating": lambda: permute(a, case.axes, threads=threads),
        "numpy copyto": lambda: np.copyto(out, view),
        "numpy ascontiguousarray": lambda: np.ascontiguousarray(view),
        "copy (ceiling)": lambda: np.copyto(flat_dst, flat_src),
    }
    try:
        import torch

        torch.set_num_threads(threads)
        tensor, out_tensor = torch.from_numpy(a), torch.from_numpy(out)
        contenders["torch out.copy_(permute())"] = lambda: out_tensor.copy_(tensor.permute(case.axes))
        contenders["torch permute().contiguous()"] = lambda: tensor.permute(case.axes).contiguous()
    except ImportError:
        pass
    if with_numba:
        assign = _numba_assign()
        if assign is not None:
            assign(out, view)  # compile outside the timed loop
            contenders["numba"] = lambda: assign(out, view)
    return contenders, plan, correct


def _numba_assign():
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False)
    def assign(dst, src):
        dst[...] = src

    return assign


def run_case(case: Case, threads: int, repeats: int, *, with_numba: bool) -> Result:
    contenders, plan, correct = _contenders(case, threads, with_numba=with_numba)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return Result(case, threads, {k: min(v) for k, v in times.items()},
                  {k: statistics.median(v) for k, v in times.items()}, plan.describe(), correct, plan.plan.threads)


def environment() -> dict:
    """What the numbers depend on: machine, ISA, load, thread variables, glibc's non-temporal threshold."""
    from qwenkit.permute.isa import resolve_isa

    record = machine_summary()
    record["isa"] = resolve_isa("auto")
    record["numpy"] = np.__version__
    for module in ("torch", "numba"):
        try:
            record[module] = __import__(module).__version__
        except ImportError:
            record[module] = None
    record["env"] = {k: v for k, v in os.environ.items()
                     if k.startswith(("OPENBLAS", "OMP_", "MKL_", "QWENKIT_PERMUTE"))}
    record["glibc_non_temporal_threshold"] = _glibc_tunable("glibc.cpu.x86_non_temporal_threshold")
    record["platform"] = platform.platform()
    return record


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


def run_benchmark(cases: list[Case], *, threads_list=(1, 2), repeats: int = 5, with_numba: bool = True,
                  progress: Callable[[str], None] = print) -> dict:
    record = {"environment": environment(), "load_average_before": os.getloadavg(), "repeats": repeats,
              "results": []}
    results = []
    for threads in threads_list:
        for case in cases:
            result = run_case(case, threads, repeats, with_numba=with_numba and threads == 1)
            results.append(result)
            progress(f"{case.name:28s} {threads}T  {result.speedup('qwenkit'):6.2f}x NumPy  "
                     f"{result.percent_of_copy():5.0f}% of copy  load {os.getloadavg()[0]:.1f}")
    record["load_average_after"] = os.getloadavg()
    record["results"] = [r.to_json() for r in results]
    return record


def summary_rows(record: dict) -> list[dict]:
    rows = []
    for item in record["results"]:
        t = item["seconds_min"]
        case = item["case"]
        row = {"case": case["name"], "MiB": item["bytes"] / 2**20, "threads": item["threads"],
               "used": item.get("threads_used", item["threads"]),
               "qwenkit ms": 1e3 * t["qwenkit"], "NumPy copyto ms": 1e3 * t["numpy copyto"],
               "x NumPy": t["numpy copyto"] / t["qwenkit"],
               "x NumPy (np.empty out)": t["numpy copyto"] / t["qwenkit into np.empty out"],
               "x ascontiguousarray (alloc vs alloc)": t["numpy ascontiguousarray"] / t["qwenkit permute() allocating"],
               "% of copy": 100 * t["copy (ceiling)"] / t["qwenkit"],
               "NumPy % of copy": 100 * t["copy (ceiling)"] / t["numpy copyto"]}
        if "torch permute().contiguous()" in t:
            row["x torch copy_"] = t["torch out.copy_(permute())"] / t["qwenkit"]
            row["x torch contiguous (alloc vs alloc)"] = (t["torch permute().contiguous()"]
                                                          / t["qwenkit permute() allocating"])
        if "numba" in t:
            row["x numba"] = t["numba"] / t["qwenkit"]
        row["correct"] = "yes" if item["correct"] else "NO"
        rows.append(row)
    return rows


def write_report(record: dict, directory: Path, *, name: str = "permute", title: str) -> tuple[Path, Path, Path]:
    """JSON + Markdown (+ HTML) + two bar charts: speed-up over NumPy, and % of copy bandwidth."""
    from qwenkit.core.checkpoint import atomic_write_text
    from qwenkit.core.plots import bar_plot
    from qwenkit.core.report import Report

    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{name}.json"
    atomic_write_text(json_path, json.dumps(record, indent=1))
    rows = summary_rows(record)
    one_thread = [r for r in rows if r["threads"] == 1] or rows
    groups = {item["case"]["name"]: item["case"]["group"] for item in record["results"]}
    charts = []
    for part, wanted in (("2-D and 3-D", {"2-D", "3-D"}), ("4-D and more", {"4-D", "6-D", "20-D"})):
        selected = [r for r in one_thread if groups[r["case"]] in wanted]
        if not selected:
            continue
        bars = {"qwenkit": [r["x NumPy"] for r in selected],
                "qwenkit, np.empty out": [r["x NumPy (np.empty out)"] for r in selected]}
        if all("x torch copy_" in r for r in selected):
            bars["torch out.copy_"] = [r["x NumPy"] / r["x torch copy_"] for r in selected]
        slug = "2d3d" if "2-D" in wanted else "nd"
        charts.append((bar_plot(directory / f"{name}_speedup_{slug}.png", [r["case"] for r in selected], bars,
                                logy=True, reference=1.0, ylabel="x NumPy",
                                title=f"Speed-up over np.copyto(out, a.transpose(p)), 1 thread: {part}"),
                       f"Speed-up over NumPy (log scale), 1 thread, {part}"))
    copy_png = bar_plot(directory / f"{name}_copy_bandwidth.png", [r["case"] for r in one_thread],
                        {"qwenkit": [r["% of copy"] for r in one_thread]}, reference=100.0,
                        title="qwenkit bandwidth as % of np.copyto of the same bytes, 1 thread", ylabel="% of copy")
    env = record["environment"]
    report = Report(title)
    report.text(
        f"Machine: {env['cpu']} ({env['cores']} usable cores), ISA `{env['isa']}`, NumPy {env['numpy']}, "
        f"torch {env['torch']}, numba {env['numba']}. Load average before {_fmt_load(record['load_average_before'])}"
        f", after {_fmt_load(record['load_average_after'])} (the cores are shared: absolute times are pessimistic, "
        f"ratios within a row are measured in the same interleaved loop). Minimum of {record['repeats']} runs; "
        "outputs pre-allocated and pre-touched (qwenkit plan, np.copyto, torch out.copy_, numba), 64-byte aligned; "
        "`x NumPy (np.empty out)` times the same plan writing into a plain `np.empty` output (16 bytes past a "
        "cache line, as NumPy allocates large arrays); the allocating "
        "calls (qwenkit permute(), np.ascontiguousarray, torch .contiguous()) are compared with each other. "
        "x = time of the other / time of qwenkit. `NumPy % of copy` bounds what any kernel can gain: a copy that "
        "reads and writes every byte once cannot beat `np.copyto` of the same bytes by much, so where NumPy already "
        "runs at more than a third of copy bandwidth, 3x NumPy is out of reach.")
    report.table(rows, list(rows[0].keys()), float_format="{:.3g}")
    for chart, caption in charts:
        report.image(chart, caption)
    report.image(copy_png, "Share of copy bandwidth, 1 thread")
    md_path, _ = report.write(directory, name=name)
    return json_path, md_path, charts[0][0] if charts else copy_png


def _fmt_load(load) -> str:
    return "/".join(f"{x:.1f}" for x in load)
