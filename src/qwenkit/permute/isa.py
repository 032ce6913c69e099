"""Instruction sets the permutation kernels are generated for, and which of them this CPU runs.

An ISA name is part of every kernel's cache key together with its compiler flags, so a cache directory shared by
machines with different CPUs never hands one of them code it cannot execute. ``-march=native`` is never used.
"""

from __future__ import annotations

import functools
import os
import platform

from qwenkit.core import system

ISA_ENV_VAR = "QWENKIT_PERMUTE_ISA"

# name -> (CPU flags it needs, compiler flags). Order: most capable last within an architecture.
_X86 = {
    "sse2": (("sse2",), ("-msse2",)),
    "avx2": (("avx2",), ("-mavx2",)),
    "avx512": (("avx512f", "avx512bw", "avx512vl"), ("-mavx512f", "-mavx512bw", "-mavx512vl")),
}
_ARM = {"neon": ((), ())}  # Advanced SIMD is architectural on aarch64: no flag, no feature check

ALL_ISAS: tuple[str, ...] = ("scalar", *_X86, *_ARM)

PREFERRED_ORDER: tuple[str, ...] = ("avx512", "avx2", "neon", "sse2")
"""Which available ISA ``"auto"`` picks, best first. AVX-512 and AVX2 measured alike on the large transposes; AVX-512's
masked loads and stores make short-axis blocks several times faster (docs/permute.md)."""


class UnknownIsaError(ValueError):
    """An ISA name that is not one of ``ALL_ISAS``, or one this CPU cannot execute."""


def is_aarch64() -> bool:
    return platform.machine().lower() in {"aarch64", "arm64"}


def is_x86_64() -> bool:
    return platform.machine().lower() in {"x86_64", "amd64"}


@functools.cache
def _cpu_isas() -> tuple[str, ...]:
    isas = ["scalar"]
    if is_x86_64():
        flags = system.cpu_flags()
        isas += [name for name, (needs, _) in _X86.items() if all(f in flags for f in needs)]
    elif is_aarch64():
        isas.append("neon")
    return tuple(isas)


def cpu_isas() -> list[str]:
    """The ISAs this CPU can execute, least capable first; always starts with ``scalar``."""
    return list(_cpu_isas())


def compiler_flags(isa: str) -> tuple[str, ...]:
    """Flags that enable ``isa`` (and nothing more) for the C compiler."""
    if isa == "scalar":
        return ()
    table = {**_X86, **_ARM}
    if isa not in table:
        raise UnknownIsaError(f"unknown ISA {isa!r}; expected one of {ALL_ISAS}")
    flags = table[isa][1]
    if isa == "avx512" and "avx512vbmi" in system.cpu_flags():
        # VBMI (byte permutes) is an optional extra of AVX-512; the flag set, and so the cache key, records it.
        flags = (*flags, "-mavx512vbmi")
    return flags


def resolve_isa(isa: str) -> str:
    """Map ``"auto"`` to ``$QWENKIT_PERMUTE_ISA`` or this CPU's best ISA, and check that a name can run here.

    The answer is cached per (name, environment value): a call costs a dictionary look-up."""
    return _resolve_isa(isa, os.environ.get(ISA_ENV_VAR, "auto") if isa == "auto" else "")


@functools.lru_cache(maxsize=64)
def _resolve_isa(isa: str, env: str) -> str:
    available = _cpu_isas()
    if isa == "auto":
        if env != "auto":
            return _resolve_isa(env, "")
        for preferred in PREFERRED_ORDER:
            if preferred in available:
                return preferred
        return "scalar"
    if isa not in ALL_ISAS:
        raise UnknownIsaError(f"unknown ISA {isa!r}; expected 'auto' or one of {ALL_ISAS}")
    if isa not in available:
        raise UnknownIsaError(f"ISA {isa!r} cannot run on this CPU; it runs {list(available)}")
    return isa


