"""Language-model plumbing shared by RL, SFT, reward modeling, embedding, inference and role-play.

- :mod:`qwenkit.lm.models`: tiny Qwen3 dense/MoE models from transformers' classes.
- :mod:`qwenkit.lm.tokenizer`: a real fast tokenizer for synthetic tasks with the Qwen chat specials.
- :mod:`qwenkit.lm.loading`: local checkpoints and tokenizers (directories, GGUF), with clear errors.
- :mod:`qwenkit.lm.logprobs`: chunked per-token log-probs and entropies.
- :mod:`qwenkit.lm.sampling`: batched sampling with KV cache and the sampler's log-probs.
- :mod:`qwenkit.lm.chat`: the Qwen3 chat format (thinking modes, soft switches, history rule, reasoning split).
- :mod:`qwenkit.lm.backends`: one chat-backend protocol; local transformers and OpenAI-compatible HTTP backends.
"""

from qwenkit.core.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "BackendError": "qwenkit.lm.backends",
        "ChatBackend": "qwenkit.lm.backends",
        "Completion": "qwenkit.lm.backends",
        "OpenAIChatBackend": "qwenkit.lm.backends",
        "TransformersBackend": "qwenkit.lm.backends",
        "ReasoningStreamParser": "qwenkit.lm.chat",
        "apply_soft_switch": "qwenkit.lm.chat",
        "generation_prompt": "qwenkit.lm.chat",
        "render_chat": "qwenkit.lm.chat",
        "render_qwen3": "qwenkit.lm.chat",
        "soft_switch": "qwenkit.lm.chat",
        "split_reasoning": "qwenkit.lm.chat",
        "strip_history_reasoning": "qwenkit.lm.chat",
        "ModelLoadError": "qwenkit.lm.loading",
        "load_causal_lm": "qwenkit.lm.loading",
        "load_tokenizer": "qwenkit.lm.loading",
        "TokenScores": "qwenkit.lm.logprobs",
        "token_logprobs": "qwenkit.lm.logprobs",
        "qwen3_config": "qwenkit.lm.models",
        "tiny_qwen3": "qwenkit.lm.models",
        "tiny_qwen3_for": "qwenkit.lm.models",
        "SampleBatch": "qwenkit.lm.sampling",
        "SamplingParams": "qwenkit.lm.sampling",
        "sample": "qwenkit.lm.sampling",
        "build_synthetic_tokenizer": "qwenkit.lm.tokenizer",
    },
)
