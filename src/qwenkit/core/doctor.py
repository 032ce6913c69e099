"""The machine checks behind ``qwenkit doctor --strict``: each tool the tests and reproductions rely on is *run*, not
merely looked up, and a failure names the Debian or PyPI package that provides it.

Set-up (``scripts/setup.sh``) ends with ``qwenkit doctor --strict``, so a fresh machine whose set-up left something out
fails there, with the package's name, instead of in a test an hour later.
"""

from __future__ import annotations

import ctypes.util
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_TIMEOUT_S = 120
_HELLO_C = '#include <stdio.h>\n#include <stdlib.h>\nint main(void) { printf("%d\\n", abs(-42)); return 0; }\n'
LATIN_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",)
CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


@dataclass(frozen=True)
class Check:
    """One machine check: ``run()`` returns a short detail on success and raises :class:`CheckFailed` otherwise."""

    name: str
    package: str
    run: Callable[[], str]


class CheckFailed(Exception):
    """A check ran and failed; the message says what happened."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    package: str
    ok: bool
    detail: str


def run_checks(checks: list[Check] | None = None) -> list[CheckResult]:
    """Run every check (default: :func:`default_checks`) and report each one."""
    results = []
    for check in checks if checks is not None else default_checks():
        try:
            results.append(CheckResult(check.name, check.package, True, check.run()))
        except (CheckFailed, OSError, subprocess.SubprocessError) as exc:
            results.append(CheckResult(check.name, check.package, False, str(exc)))
    return results


def default_checks() -> list[Check]:
    return [
        Check("C compiler (native, compile and run)", "gcc libc6-dev", _native_c),
        Check("permute's short path in C (built by pip install)", "gcc, Python headers; then pip install -e .",
              _permute_short_path),
        Check("aarch64 cross compiler + qemu (compile and run)", "gcc-aarch64-linux-gnu libc6-dev-arm64-cross "
              "qemu-user-static", _cross_c),
        Check("tesseract with eng and chi_sim", "tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim", _tesseract),
        Check("fonts (Latin and CJK)", "fonts-dejavu-core fonts-wqy-zenhei fonts-noto-cjk", _fonts),
        Check("espeak-ng (speech and its library)", "espeak-ng", _espeak),
        Check("ffmpeg (H.264 + AAC)", "ffmpeg", _ffmpeg),
        Check("pyrender offscreen on EGL (headless OpenGL)", "libegl1 libegl-mesa0 libgl1-mesa-dri; "
              "pip install pyrender", _pyrender_egl),
    ]


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S, **kwargs)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise CheckFailed(f"`{' '.join(command[:3])}` exited {result.returncode}: {' | '.join(tail)}")
    return result


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise CheckFailed(f"{tool} is not on PATH")
    return path


def _compile_and_run(compiler: str, runner: list[str]) -> str:
    with tempfile.TemporaryDirectory(prefix="qwenkit-doctor-") as tmp:
        source, binary = Path(tmp) / "hello.c", Path(tmp) / "hello"
        source.write_text(_HELLO_C)
        _run([compiler, "-O2", "-o", str(binary), str(source)] + (["-static"] if runner else []))
        output = _run([*runner, str(binary)]).stdout.strip()
    if output != "42":
        raise CheckFailed(f"the compiled program printed {output!r}, expected '42'")
    return f"{Path(compiler).name}: ok"


def _native_c() -> str:
    return _compile_and_run(_require("gcc"), [])


def _permute_short_path() -> str:
    """The extension ``setup.py`` builds (optional there, so an install without a compiler still succeeds)."""
    import importlib.util

    spec = importlib.util.find_spec("qwenkit.permute._shortpath")
    if spec is None:
        raise CheckFailed("qwenkit.permute._shortpath is not built (permute falls back to its Python short path); "
                          "install gcc and Python's headers, then re-run `pip install -e .`")
    return f"{Path(spec.origin).name}: ok"


def _cross_c() -> str:
    compiler = _require("aarch64-linux-gnu-gcc")
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if qemu is None:
        raise CheckFailed("qemu-aarch64(-static) is not on PATH")
    return _compile_and_run(compiler, [qemu]) + f" under {Path(qemu).name}"


def _tesseract() -> str:
    tesseract = _require("tesseract")
    languages = set(_run([tesseract, "--list-langs"]).stdout.split())
    missing = {"eng", "chi_sim"} - languages
    if missing:
        raise CheckFailed(f"tesseract lacks the language data {sorted(missing)}")
    from PIL import Image, ImageDraw, ImageFont

    with tempfile.TemporaryDirectory(prefix="qwenkit-doctor-") as tmp:
        image = Image.new("L", (360, 80), 255)
        ImageDraw.Draw(image).text((10, 15), "HELLO 42", fill=0, font=ImageFont.truetype(_first(LATIN_FONTS), 40))
        path = Path(tmp) / "text.png"
        image.save(path)
        read = _run([tesseract, str(path), "stdout", "-l", "eng+chi_sim", "--psm", "7"]).stdout.strip()
    if "HELLO" not in read.upper():
        raise CheckFailed(f"tesseract read {read!r} from an image of 'HELLO 42'")
    return f"read {read!r}; languages eng, chi_sim"


def _first(paths: tuple[str, ...]) -> str:
    for path in paths:
        if Path(path).is_file():
            return path
    raise CheckFailed(f"none of {list(paths)} exists")


def _fonts() -> str:
    return f"{Path(_first(LATIN_FONTS)).name}, {Path(_first(CJK_FONTS)).name}"


def _espeak() -> str:
    espeak = _require("espeak-ng")
    with tempfile.TemporaryDirectory(prefix="qwenkit-doctor-") as tmp:
        wav = Path(tmp) / "hello.wav"
        _run([espeak, "-w", str(wav), "hello world"])
        size = wav.stat().st_size
    if size < 10_000:
        raise CheckFailed(f"espeak-ng wrote only {size} bytes of audio")
    library = ctypes.util.find_library("espeak-ng")
    if library is None:
        raise CheckFailed("libespeak-ng (the library behind phoneme timings) is not found")
    ctypes.CDLL(library)
    return f"{size} bytes of speech; {library}"


def _ffmpeg() -> str:
    ffmpeg = _require("ffmpeg")
    encoders = _run([ffmpeg, "-hide_banner", "-encoders"]).stdout
    missing = [name for name in ("libx264", "aac") if name not in encoders]
    if missing:
        raise CheckFailed(f"ffmpeg has no {missing} encoder")
    return "libx264, aac"


_PYRENDER_TRIANGLE = """
import numpy as np, pyrender, trimesh
mesh = trimesh.Trimesh([[-1, -1, 0], [1, -1, 0], [0, 1, 0]], [[0, 1, 2]], process=False)
scene = pyrender.Scene(bg_color=[0, 0, 0, 1], ambient_light=[1, 1, 1])
scene.add(pyrender.Mesh.from_trimesh(mesh, smooth=False))
scene.add(pyrender.OrthographicCamera(xmag=1.5, ymag=1.5), pose=np.array(
    [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]], dtype=float))
renderer = pyrender.OffscreenRenderer(32, 32)
color, _ = renderer.render(scene, flags=pyrender.RenderFlags.FLAT)
renderer.delete()
print(int((color.sum(axis=2) > 0).sum()))
"""


def _pyrender_egl() -> str:
    """Render one triangle offscreen with pyrender on EGL (in a child: OpenGL's platform is fixed per process)."""
    import os
    import sys

    if ctypes.util.find_library("EGL") is None:
        raise CheckFailed("libEGL is not installed")
    lit = int(_run([sys.executable, "-c", _PYRENDER_TRIANGLE], env={**os.environ, "PYOPENGL_PLATFORM": "egl"},
                   ).stdout.strip().splitlines()[-1])
    if lit < 100:
        raise CheckFailed(f"the rendered triangle covers {lit} of 1,024 pixels; expected about a third")
    return f"a 32x32 triangle: {lit} pixels lit"
