"""Safe in every process and environment: fork after threaded use, unwritable or damaged kernel caches, failing
compilers, stale build folders, the thread cap, and the short path for tiny arrays (behaviour, not timing)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from qwenkit.core import system
from qwenkit.permute import PermuteFallbackWarning, api, build, isa, make_plan, permute, planner

READ_CPU_FLAGS = system.cpu_flags  # the cached reader, kept before tests monkeypatch the name

CHILD_DEADLINE_S = 120


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(build.CACHE_ENV_VAR, str(tmp_path / "cache"))
    build.LOADER.forget()
    api._cached_plan.cache_clear()
    yield tmp_path / "cache"
    build.LOADER.forget()
    api._cached_plan.cache_clear()


@pytest.fixture
def two_cores(monkeypatch):
    """Plans may use 2 threads even where the test machine grants a single core (the cap would hide the pool)."""
    monkeypatch.setattr(api, "usable_cores", lambda: 2)


def _threaded_case() -> tuple[np.ndarray, np.ndarray]:
    a = np.arange(300 * 700, dtype=np.float32).reshape(300, 700)
    return a, np.ascontiguousarray(a.T)


def _permute_with_two_threads(_index: int) -> bool:
    a, want = _threaded_case()
    return bool(np.array_equal(permute(a, threads=2), want))


def _fallback_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, PermuteFallbackWarning)]


def _wait_or_kill(pid: int) -> int:
    deadline = time.monotonic() + CHILD_DEADLINE_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung for {CHILD_DEADLINE_S} s (inherited thread pool without workers)")


def test_plain_fork_after_threaded_use_returns(forced_kernels, two_cores):
    a, want = _threaded_case()
    plan = make_plan(a, threads=2)
    assert plan.plan.threads == 2
    assert np.array_equal(permute(a, threads=2), want)
    assert api._POOLS, "the parent must have used the thread pool before forking"
    pid = os.fork()
    if pid == 0:  # the child: any exception must end it, never return into pytest
        try:
            code = 0 if _permute_with_two_threads(0) and _permute_with_two_threads(1) else 1
        except BaseException:
            code = 2
        os._exit(code)
    assert _wait_or_kill(pid) == 0
    assert np.array_equal(permute(a, threads=2), want), "the parent's pool still works after the fork"


def test_fork_multiprocessing_pool_after_threaded_use_returns(forced_kernels, two_cores):
    a, want = _threaded_case()
    assert np.array_equal(permute(a, threads=2), want) and api._POOLS
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map_async(_permute_with_two_threads, range(4)).get(timeout=CHILD_DEADLINE_S)
    assert results == [True] * 4


def test_explicit_threads_are_capped_by_the_usable_cores(forced_kernels):
    a, want = _threaded_case()
    plan = make_plan(a, threads=1000)
    assert 1 <= plan.plan.threads <= system.usable_cores()
    assert np.array_equal(permute(a, threads=1000), want)


def _make_unwritable(directory: Path) -> None:
    directory.mkdir(parents=True)
    directory.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    if os.geteuid() == 0 and shutil.which("chattr"):  # root ignores mode bits; the immutable flag holds it too
        subprocess.run(["chattr", "+i", str(directory)], check=False, capture_output=True)
    try:
        (directory / "probe").touch()
    except OSError:
        return
    (directory / "probe").unlink()
    _make_writable(directory)
    pytest.skip("cannot make a directory unwritable here (root without the immutable attribute)")


def _make_writable(directory: Path) -> None:
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(directory)], check=False, capture_output=True)
    directory.chmod(stat.S_IRWXU)


def _check_kernel_results_and_warnings(expect_in_warning: list[str]) -> list[str]:
    """Run kernels of two widths several times; every result must be NumPy's; return the fallback warnings."""
    rng = np.random.default_rng(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for dtype in (np.float32, np.uint8, np.float32):
            a = rng.integers(0, 100, size=(70, 90)).astype(dtype)
            for axes in [(1, 0), (1, 0)]:
                assert permute(a, axes, isa="scalar").tobytes() == np.ascontiguousarray(a.T).tobytes()
    messages = _fallback_warnings(caught)
    assert len(messages) == 1, messages
    for text in expect_in_warning:
        assert text in messages[0]
    return messages


def test_read_only_cache_falls_back_to_a_temporary_cache_with_one_warning(fresh_cache, forced_kernels):
    _make_unwritable(fresh_cache)
    try:
        _check_kernel_results_and_warnings([str(fresh_cache), build.CACHE_ENV_VAR])
        loaded = build.load_kernels("scalar", 4)
        assert loaded is not None and loaded.path.parent != fresh_cache, "the kernels ran from the temporary cache"
    finally:
        _make_writable(fresh_cache)


def test_cache_path_under_a_regular_file_falls_back_with_one_warning(tmp_path, monkeypatch, forced_kernels):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cache = blocker / "qwenkit" / "permute"
    monkeypatch.setenv(build.CACHE_ENV_VAR, str(cache))
    build.LOADER.forget()
    try:
        _check_kernel_results_and_warnings([str(cache), build.CACHE_ENV_VAR])
        assert build.load_kernels("scalar", 4) is not None
    finally:
        build.LOADER.forget()
    assert blocker.read_text() == "not a directory"


def test_a_temporary_cache_that_cannot_be_made_either_means_numpy(tmp_path, monkeypatch, forced_kernels):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv(build.CACHE_ENV_VAR, str(blocker / "cache"))
    monkeypatch.setattr(build.tempfile, "tempdir", str(blocker / "tmp"))  # the temporary folder is unusable too
    build.LOADER.forget()
    try:
        messages = _check_kernel_results_and_warnings([str(blocker / "cache"), build.CACHE_ENV_VAR])
        assert "falls back to NumPy" in messages[0]
    finally:
        build.LOADER.forget()


def _library(width: int = 4) -> str:
    return build.library_name("scalar", width, build.compiler_command())[0]


@pytest.mark.parametrize("damage", ["junk", "truncated"])
def test_a_damaged_cached_library_is_removed_and_rebuilt_once(fresh_cache, forced_kernels, tmp_path, damage,
                                                              monkeypatch):
    if build.compiler_command() is None:
        pytest.skip("no C compiler on this machine")
    name = _library()
    fresh_cache.mkdir(parents=True)
    if damage == "junk":
        (fresh_cache / name).write_bytes(b"this is not a shared library\n" * 40)
    else:  # a real library cut in half, as a full disk or a killed copy leaves it (a new file, not a loaded one)
        elsewhere = tmp_path / "elsewhere"
        monkeypatch.setenv(build.CACHE_ENV_VAR, str(elsewhere))
        build.LOADER.forget()
        assert build.load_kernels("scalar", 4) is not None
        whole = (elsewhere / name).read_bytes()
        (fresh_cache / name).write_bytes(whole[: len(whole) // 2])
        monkeypatch.setenv(build.CACHE_ENV_VAR, str(fresh_cache))
        build.LOADER.forget()
        api._cached_plan.cache_clear()
    a = np.arange(70 * 90, dtype=np.float32).reshape(70, 90)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert np.array_equal(permute(a, isa="scalar"), np.ascontiguousarray(a.T))
    messages = _fallback_warnings(caught)
    assert len(messages) == 1 and str(fresh_cache / name) in messages[0] and "compiling it again" in messages[0]
    assert (fresh_cache / name).read_bytes()[:4] == b"\x7fELF", "the rebuilt library replaced the damaged one"
    assert api.make_plan(a, isa="scalar")._bind() is not None


def _fake_compiler(directory: Path, *, on_compile: str) -> tuple[Path, Path]:
    """A compiler that answers ``--version`` and then, on a compile, runs ``on_compile`` (shell); every compile
    appends a line to the log, so the test can count attempts."""
    log = directory / "compiles.log"
    script = directory / "fakecc"
    script.write_text("#!/bin/sh\n"
                      'if [ "$1" = "--version" ]; then echo "fakecc 1.0"; exit 0; fi\n'
                      f'echo compile >> "{log}"\n' + on_compile + "\n")
    script.chmod(0o755)
    return script, log


def test_a_compiler_that_fails_is_tried_once_per_process(fresh_cache, forced_kernels, tmp_path, monkeypatch):
    script, log = _fake_compiler(tmp_path, on_compile='echo "fakecc: internal error" >&2; exit 1')
    monkeypatch.setenv("CC", str(script))
    messages = _check_kernel_results_and_warnings(["fakecc: internal error", "falls back to NumPy"])
    assert len(log.read_text().splitlines()) == 1, "the failing compiler is remembered, not retried on every call"
    assert messages


def test_a_library_that_still_does_not_load_after_a_rebuild_falls_back(fresh_cache, forced_kernels, tmp_path,
                                                                       monkeypatch):
    script, log = _fake_compiler(
        tmp_path, on_compile='while [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then shift; echo junk > "$1"; fi; shift; done')
    monkeypatch.setenv("CC", str(script))
    a = np.arange(70 * 90, dtype=np.float32).reshape(70, 90)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert np.array_equal(permute(a, isa="scalar"), np.ascontiguousarray(a.T))
    messages = _fallback_warnings(caught)
    assert len(messages) == 1 and "even after compiling it again" in messages[0]
    assert len(log.read_text().splitlines()) == 1
    assert not list(fresh_cache.glob("qk_*.so")), "the junk library is not left in the cache"


def test_stale_build_folders_are_removed_and_live_ones_kept(fresh_cache, forced_kernels):
    if build.compiler_command() is None:
        pytest.skip("no C compiler on this machine")
    fresh_cache.mkdir(parents=True)
    stale, live = fresh_cache / ".build-killed", fresh_cache / ".build-running"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "half.c").write_text("int x;")
    old = time.time() - 2 * build.STALE_BUILD_SECONDS
    os.utime(stale, (old, old))
    a = np.arange(70 * 90, dtype=np.float32).reshape(70, 90)
    assert np.array_equal(permute(a, isa="scalar"), np.ascontiguousarray(a.T))  # compiles into this cache
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in fresh_cache.glob(".build-*")) == [live.name]


TINY_CASES = [((), None), ((4, 4), (1, 0)), ((16, 16), None), ((8, 8, 8, 8), (3, 1, 0, 2)),
              ((4, 8, 6, 8), (0, 2, 3, 1)), ((5, 1, 3), (2, 0, 1)), ((3, 7), (-1, -2)), ((0, 4), (1, 0)),
              ((3, 4), (0, 1)), ((5, 1), (1, 0)), ((7,), None)]


@pytest.mark.parametrize(("shape", "axes"), TINY_CASES)
def test_tiny_arrays_take_numpys_path_with_numpys_result(shape, axes, monkeypatch):
    """Arrays below MIN_KERNEL_BYTES go straight to NumPy's copy: same bytes, a fresh array, and neither a plan nor
    a CPU-feature or environment look-up."""

    def forbidden():
        raise AssertionError("the tiny-array path must not read the CPU features")

    monkeypatch.setattr(system, "cpu_flags", forbidden)
    for cached in (READ_CPU_FLAGS, isa._cpu_isas, isa._resolve_isa):
        cached.cache_clear()
    try:
        plans_before = api._cached_plan.cache_info().currsize
        rng = np.random.default_rng(1)
        for dtype in (np.float32, np.uint8, np.complex128, ">i2"):
            a = rng.integers(0, 50, size=shape).astype(dtype) if shape else np.array(3, dtype)
            if a.nbytes >= planner.MIN_KERNEL_BYTES:
                continue
            want = np.ascontiguousarray(np.transpose(a, axes))
            got = permute(a, axes)
            assert got.shape == want.shape and got.dtype == want.dtype and got.tobytes() == want.tobytes()
            assert got.flags.c_contiguous and not np.shares_memory(got, a)
            out = np.empty(want.shape, dtype, order="F")
            assert permute(a, axes, out=out) is out and np.array_equal(out, want)
            if a.ndim >= 2:
                sliced = a[..., ::-1]
                assert np.array_equal(permute(sliced, axes), np.ascontiguousarray(np.transpose(sliced, axes)))
        assert api._cached_plan.cache_info().currsize == plans_before
    finally:
        for cached in (READ_CPU_FLAGS, isa._cpu_isas, isa._resolve_isa):
            cached.cache_clear()


def test_tiny_path_keeps_argument_checks_and_in_place_semantics():
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    with pytest.raises(ValueError, match="threads"):
        permute(a, threads=0)
    with pytest.raises(ValueError, match="shape"):
        permute(a, out=np.empty((3, 4), np.int64))
    with pytest.raises(TypeError, match="dtype"):
        permute(a, out=np.empty((4, 3), np.int32))
    with pytest.raises(isa.UnknownIsaError):
        permute(a, isa="avx9000")
    square = np.arange(16, dtype=np.float32).reshape(4, 4)
    expected = np.ascontiguousarray(square.T)
    assert permute(square, out=square) is square and np.array_equal(square, expected)
    objects = np.array([[object(), object()]], dtype=object)
    assert permute(objects)[1, 0] is objects[0, 1]


def test_cpu_features_are_read_once_per_process(forced_kernels, monkeypatch):
    """Counts reads of /proc/cpuinfo itself, whichever function asks for the flags (the ISA list, the AVX-512
    compiler flags), so the test holds on CPUs with and without AVX-512."""
    calls = []
    real_read_text = Path.read_text

    def counting_read_text(path, *args, **kwargs):
        if str(path) == "/proc/cpuinfo":
            calls.append(1)
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting_read_text)
    for cached in (system._cpuinfo_fields, READ_CPU_FLAGS, isa._cpu_isas, isa._resolve_isa):
        cached.cache_clear()
    api._cached_plan.cache_clear()
    try:
        a = np.arange(64 * 80, dtype=np.float32).reshape(64, 80)
        for axes in [(1, 0), (1, 0), (0, 1)]:
            assert np.array_equal(permute(a, axes), np.ascontiguousarray(a.transpose(axes)))
            make_plan(a, axes)
        assert len(calls) == (1 if Path("/proc/cpuinfo").exists() else 0)
    finally:
        for cached in (system._cpuinfo_fields, READ_CPU_FLAGS, isa._cpu_isas, isa._resolve_isa):
            cached.cache_clear()
        api._cached_plan.cache_clear()


def test_tiny_plans_run_numpys_copy():
    a = np.arange(36, dtype=np.float32).reshape(4, 9)
    plan = make_plan(a)
    assert plan.plan.kind == "numpy"
    out = np.empty((9, 4), np.float32)
    assert plan(a, out) is out and np.array_equal(out, a.T)
    assert np.array_equal(plan(a), a.T)
