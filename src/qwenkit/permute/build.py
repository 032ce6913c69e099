"""Compile the generated kernels at first use, cache the shared libraries, load them with cffi.

Cache key: sha256 of the C source, the compiler's identity (its path and ``--version`` text), the flags, the cffi
declarations and ``CACHE_FORMAT``. Each library has a ``.sum`` file beside it holding the sha256 of its bytes,
written before the library itself; a library is loaded only when its bytes match (a truncated library can crash
``dlopen`` with SIGBUS instead of failing, so it must never reach it). A library is compiled into a private
temporary folder next to its final name and moved there with ``os.replace``; an exclusive ``fcntl`` lock per key
makes a second process wait for the first compile instead of repeating it, and the atomic rename keeps a reader from
ever seeing a half-written file even without the lock.

Nothing here raises for an environment problem; each one is met once per process, warned about once
(``PermuteFallbackWarning``) and then remembered, so later calls pay nothing:

- no cffi, no compiler, or a compiler that does not answer ``--version``: NumPy for the process;
- a compiler that runs but fails to compile: NumPy for that compiler and ISA, with the compiler's error;
- a cache directory that cannot be written (read-only, or its path runs through a regular file): a per-process
  temporary cache (removed at exit), the warning naming the path and ``$QWENKIT_PERMUTE_CACHE``; if no temporary
  folder can be made either, NumPy;
- a cached library that does not match its checksum (truncated, junk) or does not load (the wrong micro tile):
  removed and rebuilt once; if the rebuilt one does not load either, NumPy for that ISA and width.

A process killed while compiling leaves its ``.build-*`` folder behind; the next compile into that directory
removes every such folder older than ``STALE_BUILD_SECONDS`` (no compile lives that long: ``COMPILE_TIMEOUT_S``).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from qwenkit.permute import codegen
from qwenkit.permute.isa import compiler_flags

CACHE_ENV_VAR = "QWENKIT_PERMUTE_CACHE"
BASE_FLAGS = ("-O3", "-std=c11", "-fPIC", "-shared", "-fno-strict-aliasing")
COMPILE_TIMEOUT_S = 300
CACHE_FORMAT = "2"
"""Part of every library's key: format 2 added the checksum files, so libraries without one are never looked for."""
STALE_BUILD_SECONDS = 2 * COMPILE_TIMEOUT_S
"""A ``.build-*`` folder older than this belongs to a compile that was killed: it is removed."""


class PermuteFallbackWarning(RuntimeWarning):
    """The C kernels are unavailable for a reason outside qwenkit (toolchain, cache directory); permute uses NumPy
    or a temporary cache instead, and says so once per process."""


class _Unavailable(Exception):
    """Internal: the kernels for one (ISA, width) cannot be had in this process; the message says why."""


class _BadLibrary(Exception):
    """Internal: a cached library exists but does not load or does not match the generator."""


class _CompileFailed(Exception):
    """Internal: the compiler ran and failed (its error text is the message)."""


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
    except (OSError, subprocess.TimeoutExpired):
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
    """Loads each (isa, width) library once per process and remembers every failure, so each warns only once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, int, str, str], Kernels | None] = {}
        self._failed_compilers: dict[tuple[str, str], str] = {}
        self._fallback_dirs: dict[str, Path | str] = {}  # a folder, or why there is none
        self._warned: set[str] = set()

    def load(self, isa: str, width: int) -> Kernels | None:
        command = compiler_command()
        key = (isa, width, " ".join(command or []), str(cache_dir()))
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            try:
                kernels = self._load(isa, width, command)
            except _Unavailable as reason:
                self._warn(str(reason))
                kernels = None
            self._loaded[key] = kernels
            return kernels

    def _load(self, isa: str, width: int, command: list[str] | None) -> Kernels:
        reason = _unavailable(command)
        if reason is not None:
            raise _Unavailable(reason)
        compiler_key = (" ".join(command), isa)
        if compiler_key in self._failed_compilers:
            raise _Unavailable(self._failed_compilers[compiler_key])
        name, source, flags = library_name(isa, width, command)
        directory = cache_dir()
        try:
            return _load_or_build(directory / name, isa, width, source, flags, command)
        except OSError as error:
            fallback = self._fallback_dir(directory, error)
        except _CompileFailed as error:
            self._failed_compilers[compiler_key] = str(error)
            raise _Unavailable(str(error)) from None
        try:
            return _load_or_build(fallback / name, isa, width, source, flags, command)
        except OSError as error:
            raise _Unavailable(f"the temporary kernel cache {fallback} cannot be written either ({error})") from None
        except _CompileFailed as error:
            self._failed_compilers[compiler_key] = str(error)
            raise _Unavailable(str(error)) from None

    def _fallback_dir(self, directory: Path, error: OSError) -> Path:
        """A per-process temporary cache standing in for an unwritable ``directory`` (one warning per directory).
        Raises ``_Unavailable`` (the same reason every time) when no temporary folder can be made either."""
        if str(directory) not in self._fallback_dirs:
            try:
                fallback: Path | str = Path(tempfile.mkdtemp(prefix="qwenkit-permute-"))
            except OSError as temp_error:
                fallback = (f"the kernel cache {directory} cannot be written ({error.strerror or error}) and no "
                            f"temporary folder can be made ({temp_error.strerror or temp_error}); set "
                            f"${CACHE_ENV_VAR} to a writable directory")
            else:
                atexit.register(_remove_tree_of_this_process, fallback, os.getpid())
                self._warn(f"the kernel cache {directory} cannot be written ({error.strerror or error}); kernels are "
                           f"compiled into {fallback} for this process only (set ${CACHE_ENV_VAR} to a writable "
                           "directory to keep them)", falls_back=False)
            self._fallback_dirs[str(directory)] = fallback
        fallback = self._fallback_dirs[str(directory)]
        if isinstance(fallback, str):
            raise _Unavailable(fallback)
        return fallback

    def _warn(self, reason: str, *, falls_back: bool = True) -> None:
        if reason not in self._warned:
            self._warned.add(reason)
            prefix = "qwenkit.permute falls back to NumPy: " if falls_back else "qwenkit.permute: "
            warnings.warn(prefix + reason, PermuteFallbackWarning, stacklevel=5)

    def forget(self) -> None:
        with self._lock:
            self._loaded.clear()
            self._failed_compilers.clear()
            self._fallback_dirs.clear()
            self._warned.clear()

    def after_fork_in_child(self) -> None:
        """A lock held by another thread at ``fork`` would stay held for ever in the child: make a new one."""
        self._lock = threading.Lock()


def _remove_tree_of_this_process(path: Path, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # a forked child inherits atexit handlers; only the creator removes its cache
        shutil.rmtree(path, ignore_errors=True)


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
os.register_at_fork(after_in_child=LOADER.after_fork_in_child)


def load_kernels(isa: str, width: int) -> Kernels | None:
    """The compiled kernels for ``isa`` and ``width``-byte elements, or None (with one warning) when they cannot be
    had in this process."""
    return LOADER.load(isa, width)


def library_name(isa: str, width: int, command: list[str]) -> tuple[str, str, tuple[str, ...]]:
    """``(file name, C source, flags)`` of the library for ``isa``/``width`` built by ``command``."""
    source = codegen.generate_source(isa, width)
    flags = (*BASE_FLAGS, *compiler_flags(isa))
    identity = _compiler_identity(tuple(command)) or ""
    key = "\0".join([source, identity, " ".join(flags), codegen.CDEF, CACHE_FORMAT])
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"qk_{isa}_w{width}_{digest[:20]}.so", source, flags


def _load_or_build(path: Path, isa: str, width: int, source: str, flags: tuple[str, ...],
                   command: list[str]) -> Kernels:
    """Load ``path``, compiling it first if absent; a library that does not load is removed and rebuilt once.

    Raises OSError when the directory cannot be written, ``_CompileFailed``, or ``_Unavailable`` when even the
    rebuilt library does not load."""
    if path.exists():
        try:
            return _open(path, isa, width)
        except _BadLibrary as error:
            warnings.warn(f"qwenkit.permute: {error}; removing it and compiling it again", PermuteFallbackWarning,
                          stacklevel=6)
            path.unlink(missing_ok=True)
            path.with_suffix(".sum").unlink(missing_ok=True)
    _compile(path, source, flags, command)
    try:
        return _open(path, isa, width)
    except _BadLibrary as error:
        path.unlink(missing_ok=True)
        path.with_suffix(".sum").unlink(missing_ok=True)
        raise _Unavailable(f"{error}, even after compiling it again") from None


def _open(path: Path, isa: str, width: int) -> Kernels:
    import cffi

    try:
        recorded = path.with_suffix(".sum").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        recorded = None
    if recorded != hashlib.sha256(path.read_bytes()).hexdigest():
        reason = "has no checksum file" if recorded is None else "does not match its checksum (truncated or damaged)"
        raise _BadLibrary(f"the cached library {path} {reason}")
    ffi = cffi.FFI()
    ffi.cdef(codegen.CDEF)
    try:
        lib = ffi.dlopen(str(path))
    except OSError as error:
        raise _BadLibrary(f"the cached library {path} does not load ({error})") from None
    try:
        micro = (lib.qk_micro_p(), lib.qk_micro_q())
    except AttributeError as error:
        raise _BadLibrary(f"the cached library {path} lacks the kernel entry points ({error})") from None
    # The planner sizes tiles from codegen.micro_shape; a library that disagrees is refused.
    if micro != codegen.micro_shape(isa, width):
        raise _BadLibrary(f"the cached library {path} reports micro tile {micro}, expected "
                          f"{codegen.micro_shape(isa, width)}")
    return Kernels(isa, width, path, ffi, lib)


def _compile(path: Path, source: str, flags: tuple[str, ...], command: list[str]) -> None:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():  # another process compiled it while we waited
            return
        remove_stale_builds(path.parent)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-") as tmp:
            c_file = Path(tmp) / (path.stem + ".c")
            c_file.write_text(source, encoding="utf-8")
            tmp_so = Path(tmp) / path.name
            try:
                done = subprocess.run([*command, *flags, "-o", str(tmp_so), str(c_file)], capture_output=True,
                                      text=True, timeout=COMPILE_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired:
                raise _CompileFailed(f"the C compiler {' '.join(command)!r} did not finish compiling {c_file.name} "
                                     f"within {COMPILE_TIMEOUT_S} s") from None
            if done.returncode != 0 or not tmp_so.exists():
                raise _CompileFailed(
                    f"the C compiler {' '.join(command)!r} failed on {c_file.name} with flags {' '.join(flags)} "
                    f"(exit {done.returncode}): {done.stderr.strip()[-2000:]}")
            tmp_sum = Path(tmp) / (path.stem + ".sum")
            tmp_sum.write_text(hashlib.sha256(tmp_so.read_bytes()).hexdigest(), encoding="ascii")
            os.replace(tmp_sum, path.with_suffix(".sum"))  # the checksum first: a library is never seen without it
            os.replace(tmp_so, path)
            path.with_suffix(".c").write_text(source, encoding="utf-8")  # kept for inspection next to the library


def remove_stale_builds(directory: Path, *, older_than_s: float = STALE_BUILD_SECONDS) -> int:
    """Remove the ``.build-*`` folders in ``directory`` left by compiles killed more than ``older_than_s`` ago;
    returns how many were removed."""
    removed = 0
    now = time.time()
    for folder in directory.glob(".build-*"):
        try:
            stale = now - folder.stat().st_mtime > older_than_s
        except OSError:
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed += not folder.exists()
    return removed


def cache_info() -> dict[str, object]:
    """Where the cache is and which libraries it holds (name and size in bytes)."""
    directory = cache_dir()
    libraries = sorted(directory.glob("qk_*.so")) if directory.is_dir() else []
    return {"directory": str(directory), "libraries": {p.name: p.stat().st_size for p in libraries},
            "compiler": " ".join(compiler_command() or []) or None}


def clear_cache() -> int:
    """Delete every cached library, source and lock file (and stale build folders); returns how many libraries were
    removed.

    Libraries this process already loaded stay mapped and usable; the next process recompiles.
    """
    directory = cache_dir()
    LOADER.forget()
    if not directory.is_dir():
        return 0
    removed = 0
    for item in directory.iterdir():
        if item.name.startswith("qk_") and item.suffix in {".so", ".c", ".lock", ".sum"}:
            removed += item.suffix == ".so"
            item.unlink(missing_ok=True)
    remove_stale_builds(directory)
    return removed
