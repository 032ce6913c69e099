"""What machine this is: CPU model and SIMD features, for ``qwenkit doctor`` and benchmark records."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

_SIMD_FLAGS = ("sse2", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
               "avx512vbmi", "avx512_vnni", "amx_tile", "neon", "asimd", "sve", "sve2")


@functools.cache
def _cpuinfo_fields() -> dict[str, str] | None:
    """Each key of ``/proc/cpuinfo`` with its first non-empty value, in the file's order (None where the file does not
    exist), read once per process for every reader below."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return None
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if value.strip():
            fields.setdefault(key.strip(), value.strip())
    return fields


def _first_field(keys: set[str]) -> str | None:
    return next((value for key, value in (_cpuinfo_fields() or {}).items() if key in keys), None)


def cpu_model() -> str:
    return _first_field({"model name", "Hardware", "Processor"}) or platform.processor() or platform.machine()


def cpu_vendor() -> str:
    """The CPU's ``vendor_id`` (``GenuineIntel``, ``AuthenticAMD``; empty where the kernel reports none, as on ARM)."""
    return _first_field({"vendor_id"}) or ""


def cpu_family() -> int | None:
    """The x86 ``cpu family`` from ``/proc/cpuinfo`` as a number (AMD: 23 Zen 1/2, 25 Zen 3/4); None elsewhere."""
    family = _first_field({"cpu family"})
    return int(family) if family is not None and family.isdigit() else None


def cpu_family_model() -> str | None:
    """``family F model M`` from ``/proc/cpuinfo`` (decimal, as the kernel prints them): the CPU generation where the
    model name says only "AMD EPYC" (family 23 is Zen 1/2, 25 Zen 3/4); None where the kernel reports neither."""
    family, model = _first_field({"cpu family"}), _first_field({"model"})
    if family is None or model is None:
        return None
    return f"family {family} model {model}"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (``flags`` on x86, ``Features`` on ARM)."""
    if _cpuinfo_fields() is None:
        return frozenset({"neon", "asimd"} if platform.machine() in {"arm64", "aarch64"} else ())
    return frozenset((_first_field({"flags", "Features"}) or "").split())


def simd_features() -> list[str]:
    """The SIMD features relevant to qwenkit's kernels that this CPU has, in a stable order."""
    flags = cpu_flags()
    return [f for f in _SIMD_FLAGS if f in flags]


L2_FALLBACK_GEOMETRY = (1024, 16, 64)
"""The 1 MiB 16-way L2 of the Skylake-SP and Cascade Lake Xeons, for machines whose kernel does not describe it."""


@functools.cache
def l2_cache_geometry() -> tuple[int, int, int]:
    """``(sets, ways, line bytes)`` of CPU 0's level-2 cache, read from sysfs once per process."""
    return read_l2_geometry(Path("/sys/devices/system/cpu/cpu0/cache"))


def read_l2_geometry(cache_dir: Path) -> tuple[int, int, int]:
    """The level-2 entry of a sysfs ``cache`` directory (``index*/level``, ``number_of_sets``,
    ``ways_of_associativity``, ``coherency_line_size``), else ``L2_FALLBACK_GEOMETRY``."""
    for index in sorted(cache_dir.glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2":
                continue
            geometry = tuple(int((index / name).read_text()) for name in
                             ("number_of_sets", "ways_of_associativity", "coherency_line_size"))
        except (OSError, ValueError):
            return L2_FALLBACK_GEOMETRY
        return geometry if all(v > 0 for v in geometry) else L2_FALLBACK_GEOMETRY
    return L2_FALLBACK_GEOMETRY


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


VIRTIO_BALLOON_DEVICE_ID = "0x0005"
VIRTIO_BALLOON_F_REPORTING = 5
"""The virtio feature bit by which a balloon device takes the guest's free-page reports (virtio spec 5.5.3)."""


def free_page_reporting(virtio_devices: Path = Path("/sys/bus/virtio/devices")) -> bool:
    """Whether this machine is a VM guest that reports its free memory to the hypervisor (a virtio balloon with
    ``VIRTIO_BALLOON_F_REPORTING``). The host then takes freed pages back a moment after they are freed, and the
    next allocation that touches them pays a page fault in the host as well as in the guest."""
    if not virtio_devices.is_dir():
        return False
    for device in virtio_devices.iterdir():
        try:
            is_balloon = (device / "device").read_text().strip() == VIRTIO_BALLOON_DEVICE_ID
            features = (device / "features").read_text().strip()
        except OSError:
            continue
        if is_balloon and features[VIRTIO_BALLOON_F_REPORTING:VIRTIO_BALLOON_F_REPORTING + 1] == "1":
            return True
    return False


def machine_summary() -> dict[str, object]:
    return {
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_family_model": cpu_family_model(),
        "cores": usable_cores(),
        "simd": simd_features(),
        "python": platform.python_version(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
