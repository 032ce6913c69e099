"""Language-model plumbing shared by RL, SFT, reward modeling, embedding, inference and role-play.

- :mod:`qwenkit.lm.models`: tiny Qwen3 dense/MoE models from transformers' classes.
- :mod:`qwenkit.lm.tokenizer`: a real fast tokenizer for synthetic tasks with the Qwen chat specials.
- :mod:`qwenkit.lm.loading`: local checkpoints and tokenizers (directories, GGUF), with clear errors.
- :mod:`qwenkit.lm.logprobs`: chunked per-token log-probs and entropies.
- :mod:`qwenkit.lm.sampling`: batched sampling with KV cache and the sampler's log-probs.
"""

from qwenkit.lm.loading import ModelLoadError, load_causal_lm, load_tokenizer
from qwenkit.lm.logprobs import TokenScores, token_logprobs
from qwenkit.lm.models import qwen3_config, tiny_qwen3, tiny_qwen3_for
from qwenkit.lm.sampling import SampleBatch, SamplingParams, sample
from qwenkit.lm.tokenizer import build_synthetic_tokenizer

__all__ = [
    "ModelLoadError",
    "SampleBatch",
    "SamplingParams",
    "TokenScores",
    "build_synthetic_tokenizer",
    "load_causal_lm",
    "load_tokenizer",
    "qwen3_config",
    "sample",
    "tiny_qwen3",
    "tiny_qwen3_for",
    "token_logprobs",
]
