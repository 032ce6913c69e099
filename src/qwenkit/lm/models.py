"""Tiny Qwen3 models built from configs with transformers' own classes (``Qwen3ForCausalLM``, ``Qwen3MoeForCausalLM``).

Sized by name so that tests and reproductions train in seconds on two CPU cores; the same code path takes a real
checkpoint through :func:`qwenkit.lm.loading.load_causal_lm`.
"""

from __future__ import annotations

from typing import Any

import torch

# hidden, intermediate, layers, heads, kv heads, head dim
SIZES: dict[str, tuple[int, int, int, int, int, int]] = {
    "nano": (32, 64, 2, 4, 2, 8),
    "tiny": (64, 128, 2, 4, 2, 16),
    "small": (128, 384, 4, 4, 2, 32),
    "base": (256, 768, 6, 8, 4, 32),
}


def qwen3_config(size: str = "tiny", *, vocab_size: int = 128, moe: bool = False, **overrides: Any):
    """A ``Qwen3Config`` (dense) or ``Qwen3MoeConfig`` (``moe=True``: 4 experts, 2 routed per token, router aux loss).

    ``overrides`` set any config field (e.g. ``max_position_embeddings=512``, ``num_experts=8``).
    """
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    hidden, intermediate, layers, heads, kv_heads, head_dim = SIZES[size]
    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        max_position_embeddings=1024,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=None,
        attn_implementation="sdpa",
    )
    if moe:
        from transformers import Qwen3MoeConfig

        common.update(
            intermediate_size=intermediate,
            moe_intermediate_size=max(16, intermediate // 2),
            num_experts=4,
            num_experts_per_tok=2,
            decoder_sparse_step=1,
            norm_topk_prob=True,
            output_router_logits=True,
            router_aux_loss_coef=0.01,
        )
        common.update(overrides)
        return Qwen3MoeConfig(**common)
    from transformers import Qwen3Config

    common.update(intermediate_size=intermediate)
    common.update(overrides)
    return Qwen3Config(**common)


def tiny_qwen3(
    size: str = "tiny",
    *,
    vocab_size: int = 128,
    moe: bool = False,
    seed: int | None = 0,
    pad_token_id: int | None = None,
    eos_token_id: int | list[int] | None = None,
    **overrides: Any,
):
    """A randomly initialised Qwen3 (dense or MoE) causal LM of the given size, seeded for reproducibility.

    Pass the tokenizer's ``pad_token_id``/``eos_token_id`` (or use :func:`tiny_qwen3_for`) so generation stops right.
    """
    from transformers import Qwen3ForCausalLM, Qwen3MoeForCausalLM

    config = qwen3_config(
        size, vocab_size=vocab_size, moe=moe, pad_token_id=pad_token_id, eos_token_id=eos_token_id, **overrides
    )
    if seed is not None:
        torch.manual_seed(seed)
    model_class = Qwen3MoeForCausalLM if moe else Qwen3ForCausalLM
    return model_class(config)


def tiny_qwen3_for(tokenizer, size: str = "tiny", *, moe: bool = False, seed: int | None = 0, **overrides: Any):
    """A tiny Qwen3 whose vocabulary and special ids match ``tokenizer``."""
    return tiny_qwen3(
        size,
        vocab_size=len(tokenizer),
        moe=moe,
        seed=seed,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **overrides,
    )


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
