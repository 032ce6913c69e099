"""Language-model plumbing shared by RL, SFT, reward modeling, embedding, inference and role-play.

- :mod:`qwenkit.lm.models`: tiny Qwen3 dense/MoE models from transformers' classes.
- :mod:`qwenkit.lm.tokenizer`: a real fast tokenizer for synthetic tasks with the Qwen chat specials.
- :mod:`qwenkit.lm.loading`: local checkpoints and tokenizers (directories, GGUF), with clear errors.
- :mod:`qwenkit.lm.logprobs`: chunked per-token log-probs and entropies.
- :mod:`qwenkit.lm.sampling`: batched sampling with KV cache and the sampler's log-probs.
- :mod:`qwenkit.lm.chat`: the Qwen3 chat format (thinking modes, soft switches, history rule, reasoning split).
- :mod:`qwenkit.lm.backends`: one chat-backend protocol; local transformers and OpenAI-compatible HTTP backends.
"""

import importlib
from typing import Any

_EXPORTS = {
    "BackendError": "backends",
    "ChatBackend": "backends",
    "Completion": "backends",
    "OpenAIChatBackend": "backends",
    "TransformersBackend": "backends",
    "ReasoningStreamParser": "chat",
    "apply_soft_switch": "chat",
    "generation_prompt": "chat",
    "render_chat": "chat",
    "render_qwen3": "chat",
    "soft_switch": "chat",
    "split_reasoning": "chat",
    "strip_history_reasoning": "chat",
    "ModelLoadError": "loading",
    "load_causal_lm": "loading",
    "load_tokenizer": "loading",
    "TokenScores": "logprobs",
    "token_logprobs": "logprobs",
    "qwen3_config": "models",
    "tiny_qwen3": "models",
    "tiny_qwen3_for": "models",
    "SampleBatch": "sampling",
    "SamplingParams": "sampling",
    "sample": "sampling",
    "build_synthetic_tokenizer": "tokenizer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy: importing qwenkit.lm must not import torch (the CLI discovers packages at start-up).
    if name not in _EXPORTS:
        raise AttributeError(f"module 'qwenkit.lm' has no attribute {name!r}")
    return getattr(importlib.import_module(f"qwenkit.lm.{_EXPORTS[name]}"), name)
