"""Loading real checkpoints and tokenizers from a local directory (never from a hub at run time).

``load_causal_lm(path)`` takes any Hugging Face causal-LM directory (``config.json`` + safetensors/bin weights, sharded
or not) or a GGUF file inside a directory (``gguf_file=``, dequantised by transformers; needs the ``gguf`` and
``accelerate`` packages). Every failure names the path and what is wrong: missing directory, missing config, missing
weights, weights that do not match the config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")


class ModelLoadError(RuntimeError):
    """A local model or tokenizer directory cannot be loaded; the message names the path and the problem."""


def _check_directory(path: str | Path, gguf_file: str | None) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"model path {str(path)!r} does not exist; qwenkit loads local directories only (download the checkpoint "
            "first, e.g. with `huggingface-cli download`, then pass its directory)"
        )
    if path.is_file() and path.suffix == ".gguf":
        raise ModelLoadError(f"{str(path)!r} is a GGUF file: pass its directory and gguf_file={path.name!r}")
    if not path.is_dir():
        raise ModelLoadError(f"model path {str(path)!r} is not a directory")
    if gguf_file is not None:
        if not (path / gguf_file).is_file():
            found = sorted(p.name for p in path.glob("*.gguf"))
            raise ModelLoadError(f"GGUF file {gguf_file!r} is not in {str(path)!r}; GGUF files there: {found}")
        return path
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{str(path)!r} has no config.json; it is not a Hugging Face model directory")
    return path


def load_causal_lm(
    path: str | Path,
    *,
    gguf_file: str | None = None,
    dtype: torch.dtype | str = "auto",
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    **kwargs: Any,
):
    """Load a causal LM from a local directory with ``AutoModelForCausalLM.from_pretrained`` and verify its weights.

    Raises :class:`ModelLoadError` when the directory, config or weights are missing, or when weights are missing for,
    or have another shape than, the parameters the config describes.
    """
    from transformers import AutoModelForCausalLM

    directory = _check_directory(path, gguf_file)
    if gguf_file is None and not any(any(directory.glob(p)) for p in _WEIGHT_PATTERNS):
        raise ModelLoadError(
            f"{str(directory)!r} has a config.json but no weights (*.safetensors or pytorch_model*.bin)"
        )
    if gguf_file is not None:
        _require("gguf", "loading GGUF files")
        _require("accelerate", "loading GGUF files")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(directory),
            gguf_file=gguf_file,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            local_files_only=True,
            output_loading_info=True,
            **kwargs,
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"cannot load the model in {str(directory)!r}: {exc}") from exc
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in info.get("missing_keys", []) if k not in tied and not k.endswith("lm_head.weight")]
    if missing:
        raise ModelLoadError(
            f"the weights in {str(directory)!r} do not match its config: {len(missing)} parameters have no weights "
            f"(first: {missing[:3]}); the checkpoint is incomplete or belongs to another architecture"
        )
    if info.get("mismatched_keys"):
        raise ModelLoadError(f"weights in {str(directory)!r} have the wrong shape: {info['mismatched_keys'][:3]}")
    if device is not None:
        model = model.to(device)
    model.eval()
    return model


def load_tokenizer(path: str | Path, *, gguf_file: str | None = None, **kwargs: Any):
    """Load a tokenizer from a local directory (or from a GGUF file in it); raises :class:`ModelLoadError`."""
    from transformers import AutoTokenizer

    directory = _check_directory(path, gguf_file) if gguf_file else Path(path).expanduser()
    if not directory.is_dir():
        raise ModelLoadError(f"tokenizer path {str(directory)!r} is not a directory")
    try:
        return AutoTokenizer.from_pretrained(str(directory), gguf_file=gguf_file, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {str(directory)!r}: {exc}") from exc


def _require(module: str, purpose: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ModelLoadError(f"{purpose} needs the {module!r} package: pip install {module}")


def offline_environment() -> None:
    """Tell the Hugging Face libraries never to reach a hub (qwenkit loads local files only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
