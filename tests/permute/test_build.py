"""Build and cache: no-compiler fallback, concurrent first use from two processes, cache info and clearing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from qwenkit.permute import PermuteFallbackWarning, api, build, cache_info, clear_cache, permute


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(build.CACHE_ENV_VAR, str(tmp_path / "cache"))
    build.LOADER.forget()
    api._cached_plan.cache_clear()
    yield tmp_path / "cache"
    build.LOADER.forget()
    api._cached_plan.cache_clear()


def test_without_a_compiler_results_are_numpys_and_it_warns_once(fresh_cache, forced_kernels, monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    a = np.random.default_rng(0).standard_normal((70, 90)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for axes in [(1, 0), (0, 1), (1, 0)]:
            assert np.array_equal(permute(a, axes), np.ascontiguousarray(a.transpose(axes)))
        assert np.array_equal(permute(a.astype(np.uint8)), np.ascontiguousarray(a.astype(np.uint8).T))
    fallbacks = [w for w in caught if issubclass(w.category, PermuteFallbackWarning)]
    assert len(fallbacks) == 1 and "no C compiler" in str(fallbacks[0].message)
    assert not list(fresh_cache.glob("*.so")) if fresh_cache.exists() else True


def test_a_failing_compiler_also_falls_back(fresh_cache, forced_kernels, monkeypatch):
    monkeypatch.setenv("CC", "false")
    a = np.arange(64 * 64, dtype=np.int16).reshape(64, 64)
    with pytest.warns(PermuteFallbackWarning, match="does not run"):
        assert np.array_equal(permute(a), np.ascontiguousarray(a.T))


_CHILD = textwrap.dedent("""
    import sys, numpy as np
    from qwenkit.permute import api, planner
    planner.MIN_KERNEL_BYTES = 0
    a = np.arange(96 * 80, dtype=np.float32).reshape(96, 80)
    for _ in range(3):
        assert np.array_equal(api.permute(a, isa="scalar"), np.ascontiguousarray(a.T))
    plan = api.make_plan(a, isa="scalar")
    print(plan.plan.kind, api.load_kernels("scalar", 4).path)
""")


def test_two_processes_compile_the_same_kernel_concurrently(fresh_cache):
    children = [subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (_stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
    paths = {stdout.split()[1] for stdout, _ in outputs}
    assert len(paths) == 1 and all(stdout.split()[0] == "tile" for stdout, _ in outputs)
    libraries = list(fresh_cache.glob("qk_scalar_w4_*.so"))
    assert [str(p) for p in libraries] == list(paths)
    assert not list(fresh_cache.glob(".build-*")), "no temporary build directory may be left behind"


def test_cache_info_and_clear(fresh_cache, forced_kernels):
    a = np.zeros((40, 40), np.uint8)
    permute(a, isa="scalar")
    info = cache_info()
    assert info["directory"] == str(fresh_cache)
    assert any(name.startswith("qk_scalar_w1_") for name in info["libraries"])
    assert clear_cache() >= 1
    assert cache_info()["libraries"] == {}
    assert np.array_equal(permute(a + 1, isa="scalar"), np.ones((40, 40), np.uint8))  # recompiles
    assert cache_info()["libraries"]


def test_cache_key_changes_with_flags_and_source():
    command = build.compiler_command()
    if command is None:
        pytest.skip("no C compiler on this machine")
    paths = {build.library_name(isa, width, command)[0] for isa in ("scalar", "sse2") for width in (1, 2)}
    assert len(paths) == 4
