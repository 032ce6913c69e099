"""Compile the generated kernels at first use, cache the shared libraries, load them with cffi.

Cache key: sha256 of the C source, the compiler's identity (its path and ``--version`` text), the flags and the cffi
declarations. A library is compiled into a private temporary file next to its final name and moved there with
``os.replace``; an exclusive ``fcntl`` lock per key makes a second process wait for the first compile instead of
repeating it, and the atomic rename keeps a reader from ever seeing a half-written file even without the lock.

With no working compiler (or no cffi), ``load_kernels`` returns None and one ``PermuteFallbackWarning`` is issued per
process: callers then use NumPy, so results never depend on the toolchain.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from qwenkit.permute import codegen
from qwenkit.permute.isa import compiler_flags

CACHE_ENV_VAR = "QWENKIT_PERMUTE_CACHE"
BASE_FLAGS = ("-O3", "-std=c11", "-fPIC", "-shared", "-fno-strict-aliasing")
COMPILE_TIMEOUT_S = 300


class PermuteFallbackWarning(RuntimeWarning):
    """The C kernels are unavailable (no compiler or no cffi); permute falls back to NumPy."""


class KernelBuildError(RuntimeError):
    """The compiler ran but failed on generated code: a bug in the generator, never a missing toolchain."""


def cache_dir() -> Path:
    """``$QWENKIT_PERMUTE_CACHE``, else ``$XDG_CACHE_HOME/qwenkit/permute``, else ``~/.cache/qwenkit/permute``."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "qwenkit" / "permute"


def compiler_command() -> list[str] | None:
    """``$CC`` (may carry arguments) or ``cc``; None when it cannot be found."""
    words = shlex.split(os.environ.get("CC", "cc"))
    if not words or shutil.which(words[0]) is None:
        return None
    return [shutil.which(words[0]), *words[1:]]


@functools.lru_cache(maxsize=8)
def _compiler_identity(command: tuple[str, ...]) -> str | None:
    try:
        done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return f"{' '.join(command)}\n{done.stdout}"


@dataclass(frozen=True)
class Kernels:
    """One loaded library and its cffi handle."""

    isa: str
    width: int
    path: Path
    ffi: object
    lib: object


class _Loader:
    """Loads each (isa, width) library once per process; remembers a missing toolchain so it warns only once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, int, str, str], Kernels] = {}
        self._unavailable_reason: str | None = None
        self._warned = False

    def load(self, isa: str, width: int) -> Kernels | None:
        command = compiler_command()
        key = (isa, width, " ".join(command or []), str(cache_dir()))
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            reason = _unavailable(command)
            if reason is not None:
                self._warn(reason)
                return None
            kernels = _build_and_load(isa, width, command)
            self._loaded[key] = kernels
            return kernels

    def _warn(self, reason: str) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"qwenkit.permute falls back to NumPy: {reason}", PermuteFallbackWarning, stacklevel=4)

    def forget(self) -> None:
        with self._lock:
            self._loaded.clear()
            self._warned = False


def _unavailable(command: list[str] | None) -> str | None:
    try:
        import cffi  # noqa: F401
    except ImportError:
        return "cffi is not installed (pip install 'qwenkit[permute]')"
    if command is None:
        return f"no C compiler found (looked for $CC={os.environ.get('CC', '')!r} or 'cc' on PATH)"
    if _compiler_identity(tuple(command)) is None:
        return f"the C compiler {' '.join(command)!r} does not run"
    return None


LOADER = _Loader()


def load_kernels(isa: str, width: int) -> Kernels | None:
    """The compiled kernels for ``isa`` and ``width``-byte elements, or None (with one warning) without a toolchain."""
    return LOADER.load(isa, width)


def library_path(isa: str, width: int, command: list[str]) -> tuple[Path, str, tuple[str, ...]]:
    source = codegen.generate_source(isa, width)
    flags = (*BASE_FLAGS, *compiler_flags(isa))
    identity = _compiler_identity(tuple(command)) or ""
    digest = hashlib.sha256("\0".join([source, identity, " ".join(flags), codegen.CDEF]).encode()).hexdigest()
    return cache_dir() / f"qk_{isa}_w{width}_{digest[:20]}.so", source, flags


def _build_and_load(isa: str, width: int, command: list[str]) -> Kernels:
    import cffi

    path, source, flags = library_path(isa, width, command)
    if not path.exists():
        _compile(path, source, flags, command)
    ffi = cffi.FFI()
    ffi.cdef(codegen.CDEF)
    lib = ffi.dlopen(str(path))
    # The planner sizes tiles from codegen.micro_shape; a library that disagrees (a damaged cache entry) is refused.
    if (lib.qk_micro_p(), lib.qk_micro_q()) != codegen.micro_shape(isa, width):
        raise KernelBuildError(f"{path} reports micro tile {(lib.qk_micro_p(), lib.qk_micro_q())}, expected "
                               f"{codegen.micro_shape(isa, width)}: delete it (qwenkit.permute.clear_cache())")
    return Kernels(isa, width, path, ffi, lib)


def _compile(path: Path, source: str, flags: tuple[str, ...], command: list[str]) -> None:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():  # another process compiled it while we waited
            return
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-") as tmp:
            c_file = Path(tmp) / (path.stem + ".c")
            c_file.write_text(source, encoding="utf-8")
            tmp_so = Path(tmp) / path.name
            done = subprocess.run([*command, *flags, "-o", str(tmp_so), str(c_file)], capture_output=True,
                                  text=True, timeout=COMPILE_TIMEOUT_S, check=False)
            if done.returncode != 0:
                raise KernelBuildError(
                    f"compiling {c_file.name} with {' '.join([*command, *flags])} failed "
                    f"(exit {done.returncode}):\n{done.stderr[-4000:]}")
            os.replace(tmp_so, path)
            path.with_suffix(".c").write_text(source, encoding="utf-8")  # kept for inspection next to the library


def cache_info() -> dict[str, object]:
    """Where the cache is and which libraries it holds (name and size in bytes)."""
    directory = cache_dir()
    libraries = sorted(directory.glob("qk_*.so")) if directory.exists() else []
    return {"directory": str(directory), "libraries": {p.name: p.stat().st_size for p in libraries},
            "compiler": " ".join(compiler_command() or []) or None}


def clear_cache() -> int:
    """Delete every cached library, source and lock file; returns how many libraries were removed.

    Libraries this process already loaded stay mapped and usable; the next process recompiles.
    """
    directory = cache_dir()
    if not directory.exists():
        return 0
    removed = 0
    for item in directory.iterdir():
        if item.name.startswith("qk_") and item.suffix in {".so", ".c", ".lock"}:
            removed += item.suffix == ".so"
            item.unlink(missing_ok=True)
    LOADER.forget()
    return removed
