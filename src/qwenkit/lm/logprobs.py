"""Per-token log-probabilities and entropies of given sequences under a causal LM, in bounded memory.

Alignment: for ``input_ids`` of shape (B, T), position t of the result scores token ``input_ids[:, t]`` given the tokens
before it, so ``logprobs[:, t] = log softmax(z_{t-1} / T)[input_ids[:, t]]`` and ``entropy[:, t] = H(softmax(z_{t-1}/T))
= logsumexp(z/T) - sum_j softmax(z/T)_j (z_j/T)``, the entropy of the distribution that *predicted* token t (the
"token entropy" of the 80/20 paper). Position 0 is never scored. ``mask`` marks scored positions: attention mask (and
completion mask when given) and t >= 1.

Memory: the model returns hidden states (the LM head is applied here, not in the model's forward), and the head is
applied over ``chunk_size`` positions at a time in float32. Peak extra memory is about ``3 * B * chunk_size * V * 4``
bytes (logits, log-softmax, probabilities of one chunk) instead of ``3 * B * T * V * 4`` for a full-softmax pass:
for B=1, T=4096, V=32k, chunk 256: ~100 MB instead of ~1.6 GB. With gradients enabled, each chunk is recomputed in
the backward pass (activation checkpointing), so the saved activations stay at the hidden states, not the logits.
Entropies are always computed without gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


@dataclass
class TokenScores:
    logprobs: torch.Tensor
    """(B, T) float32 log-probability of each token; 0 where ``mask`` is False."""
    mask: torch.Tensor
    """(B, T) bool: positions that were scored."""
    entropy: torch.Tensor | None = None
    """(B, T) float32 entropy of the predicting distribution (no gradient); 0 where ``mask`` is False."""
    aux_loss: torch.Tensor | None = None
    """The model's auxiliary loss when it returns one (MoE router load-balancing loss)."""
    router_logits: Any = None
    """The model's router logits when it returns them (MoE), for routing-change diagnostics."""


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count only real tokens, so a left-padded row gets the same positions as when it is alone."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def logprobs_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, *, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log softmax(logits/T)[labels]`` and optionally the entropy per position, in float32; logits (..., V)."""
    scaled = logits.float() / temperature
    log_probs = torch.log_softmax(scaled, dim=-1)
    token_logp = log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(log_probs.exp() * log_probs).sum(-1)
    return token_logp, entropy


def logprobs_from_hidden(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply ``head`` to ``hidden`` (B, L, H) ``chunk_size`` positions at a time and score ``labels`` (B, L)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    logp_chunks, entropy_chunks = [], []
    use_checkpoint = torch.is_grad_enabled() and hidden.requires_grad

    def score(h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # one head application per chunk gives both outputs; the entropy carries no gradient
        return logprobs_from_logits(head(h), y, temperature, with_entropy=with_entropy)

    for start in range(0, hidden.shape[1], chunk_size):
        h = hidden[:, start : start + chunk_size]
        y = labels[:, start : start + chunk_size]
        if use_checkpoint:
            logp, entropy = checkpoint(score, h, y, use_reentrant=False)
        else:
            logp, entropy = score(h, y)
        logp_chunks.append(logp)
        if with_entropy:
            entropy_chunks.append(entropy)
    empty = hidden.new_zeros(hidden.shape[0], 0, dtype=torch.float32)
    logp = torch.cat(logp_chunks, dim=1) if logp_chunks else empty
    entropy = (torch.cat(entropy_chunks, dim=1) if entropy_chunks else empty) if with_entropy else None
    return logp, entropy


@contextlib.contextmanager
def hidden_states_as_logits(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within the block, the model's forward returns final hidden states in ``.logits`` (its head is bypassed).

    The forward still runs through ``model`` itself, so a DDP/FSDP wrapper sees it and synchronises gradients; the
    head's parameters receive their gradients from the chunked scoring in the same backward pass. Yields the head.
    """
    inner = getattr(model, "module", model)
    head = inner.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(inner).__name__} has no output embeddings (LM head); it is not a causal LM")
    inner.set_output_embeddings(torch.nn.Identity())
    try:
        yield head
    finally:
        inner.set_output_embeddings(head)


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    completion_mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int = 256,
    **forward_kwargs: Any,
) -> TokenScores:
    """Score every token of ``input_ids`` (B, T) under ``model`` (see the module docstring for alignment/memory).

    ``completion_mask`` (B, T) restricts the scored positions (e.g. to the completion after a prompt). Works under
    left or right padding: position ids are derived from ``attention_mask``.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    with hidden_states_as_logits(model) as head:
        outputs = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
            **forward_kwargs,
        )
    hidden = outputs.logits[:, :-1]
    logp, entropy = logprobs_from_hidden(
        hidden, head, input_ids[:, 1:], temperature=temperature, with_entropy=with_entropy, chunk_size=chunk_size
    )
    mask = attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()
    if completion_mask is not None:
        mask = mask & completion_mask[:, 1:].bool()
    logp = F.pad(logp, (1, 0))
    full_mask = F.pad(mask, (1, 0), value=False)
    logp = logp.masked_fill(~full_mask, 0.0)
    if entropy is not None:
        entropy = F.pad(entropy, (1, 0)).masked_fill(~full_mask, 0.0)
    return TokenScores(
        logprobs=logp,
        mask=full_mask,
        entropy=entropy,
        aux_loss=getattr(outputs, "aux_loss", None),
        router_logits=getattr(outputs, "router_logits", None),
    )
