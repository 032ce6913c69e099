"""Pooling of token states into one vector per text, and Matryoshka truncation (pure tensor functions).

All poolers find real tokens from the attention mask only, never from ``input_ids != pad_id``: in Qwen3-Embedding the
appended ``<|endoftext|>`` *is* the pad token, so an id-based rule would drop it (QwenLM/Qwen3-Embedding #122).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

PoolingMode = Literal["last", "mean", "cls"]
POOLING_MODES: tuple[str, ...] = ("last", "mean", "cls")


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row: ``L - 1 - argmax(flip(mask))``; right for left *and* right padding.

    A row without any real token raises (there is nothing to pool).
    """
    mask = attention_mask.bool()
    if not bool(mask.any(dim=1).all()):
        raise ValueError("a row of attention_mask has no real token (all zeros); every text needs at least one token")
    length = mask.shape[1]
    return length - 1 - mask.flip(1).to(torch.int64).argmax(dim=1)


def first_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the first real token of each row (0 under right padding, the first 1 under left padding)."""
    mask = attention_mask.bool()
    if not bool(mask.any(dim=1).all()):
        raise ValueError("a row of attention_mask has no real token (all zeros); every text needs at least one token")
    return mask.to(torch.int64).argmax(dim=1)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: PoolingMode) -> torch.Tensor:
    """Pool ``hidden`` (batch, length, dim) into (batch, dim).

    - ``last``: ``h[i, t_i]`` with ``t_i`` the last position whose mask is 1 (Qwen3-Embedding, paper section 2).
    - ``mean``: ``sum_t m_it h_it / sum_t m_it`` (sentence-transformers' mean pooling).
    - ``cls``: ``h[i, f_i]`` with ``f_i`` the first real position (correct under left padding too; ST #3208).
    """
    if mode == "last":
        index = last_token_index(attention_mask)
    elif mode == "cls":
        index = first_token_index(attention_mask)
    elif mode == "mean":
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    else:
        raise ValueError(f"unknown pooling mode {mode!r}; choose one of {POOLING_MODES}")
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, index.to(hidden.device)]


def matryoshka(embeddings: torch.Tensor, dim: int | None, *, normalize: bool = True) -> torch.Tensor:
    """Matryoshka representation: keep the first ``dim`` coordinates, then L2-normalise: ``e[:dim] / ||e[:dim]||``.

    Truncation comes *before* normalisation (Qwen3-Embedding README; infinity #538 returned un-normalised vectors).
    ``dim=None`` keeps the full vector. Valid dims are 32..full (or the full size when it is below 32).
    """
    full = embeddings.shape[-1]
    if dim is not None:
        check_dim(dim, full)
        embeddings = embeddings[..., :dim]
    return F.normalize(embeddings, p=2, dim=-1) if normalize else embeddings


def check_dim(dim: int, full: int) -> None:
    """Raise ``ValueError`` unless ``min(32, full) <= dim <= full``."""
    low = min(32, full)
    if not isinstance(dim, int) or isinstance(dim, bool) or not low <= dim <= full:
        raise ValueError(f"dimension {dim!r} is out of range; this model supports {low} <= dim <= {full}")
