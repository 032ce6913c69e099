"""The Qwen3-Embedding contrastive loss (paper eq. 1), its Matryoshka form, as pure tensor functions.

Paper eq. 1, with cosine similarity ``s`` and temperature ``tau``::

    L = -1/N sum_i log( exp(s(q_i, d_i+)/tau) / Z_i )
    Z_i = exp(s(q_i, d_i+)/tau) + sum_k m_ik exp(s(q_i, d_ik-)/tau)          (own hard negatives)
          + sum_{j!=i} m_ij exp(s(q_i, q_j)/tau)                              (in-batch queries)
          + sum_{j!=i} m_ij exp(s(d_i+, d_j)/tau)                             (in-batch documents vs the positive)
          + sum_{j!=i} m_ij exp(s(q_i, d_j)/tau)                              (in-batch documents vs the query)

False negatives are masked: ``m_ij = 0`` when the item's score with the query exceeds ``s(q_i, d_i+) + margin``
(margin 0.1 in the paper) or when the document is identical to ``d_i+``. The paper does not say which score is
thresholded in the document-document block; like ms-swift we only drop identical documents there unless
``doc_doc_margin=True`` (then ``s(d_i+, d_j)`` is compared with the same threshold).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def info_nce_logits(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor | None = None,
    *,
    temperature: float = 0.05,
    margin: float | None = 0.1,
    hard_negatives: bool = True,
    query_query: bool = True,
    doc_doc: bool = True,
    query_doc: bool = True,
    doc_doc_margin: bool = False,
    positive_ids: torch.Tensor | None = None,
    negative_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled scores ``[s(q_i,d_i+), blocks...] / tau`` (N, 1+M) and the mask of kept columns (N, 1+M).

    ``query``/``positive``: (N, D); ``negatives``: (N, K, D) or None. Vectors are L2-normalised here (cosine).
    ``positive_ids`` (N,) and ``negative_ids`` (N, K) identify documents: equal ids mean identical documents
    (default: every document distinct). Masked columns are set to ``-inf`` so they get zero gradient.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}; it must be > 0")
    n = query.shape[0]
    q = F.normalize(query.float(), dim=-1)
    p = F.normalize(positive.float(), dim=-1)
    if positive_ids is None:
        positive_ids = torch.arange(n, device=q.device)
    s_pos = (q * p).sum(-1)
    threshold = s_pos.detach() + margin if margin is not None else torch.full_like(s_pos, float("inf"))
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=q.device)
    different_doc = positive_ids[:, None] != positive_ids[None, :]
    scores, keep = [s_pos[:, None]], [torch.ones(n, 1, dtype=torch.bool, device=q.device)]
    if hard_negatives and negatives is not None and negatives.shape[1] > 0:
        d_neg = F.normalize(negatives.float(), dim=-1)
        s = torch.einsum("nd,nkd->nk", q, d_neg)
        ids = negative_ids if negative_ids is not None else torch.full(s.shape, -1, device=q.device)
        scores.append(s)
        keep.append((s <= threshold[:, None]) & (ids != positive_ids[:, None]))
    if query_query:
        s = q @ q.T
        scores.append(s)
        keep.append(off_diagonal & (s <= threshold[:, None]))
    if doc_doc:
        s = p @ p.T
        scores.append(s)
        kept = off_diagonal & different_doc
        keep.append(kept & (s <= threshold[:, None]) if doc_doc_margin else kept)
    if query_doc:
        s = q @ p.T
        scores.append(s)
        keep.append(off_diagonal & different_doc & (s <= threshold[:, None]))
    logits = torch.cat(scores, dim=1) / temperature
    mask = torch.cat(keep, dim=1)
    return logits.masked_fill(~mask, float("-inf")), mask


def info_nce_loss(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None = None,
                  **options) -> torch.Tensor:
    """Paper eq. 1: ``mean_i [logsumexp_j l_ij - l_i0]`` over the kept columns of :func:`info_nce_logits`."""
    logits, _ = info_nce_logits(query, positive, negatives, **options)
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def matryoshka_info_nce_loss(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor | None = None,
    *,
    dims: Sequence[int | None] = (None,),
    weights: Sequence[float] | None = None,
    **options,
) -> torch.Tensor:
    """Matryoshka loss: ``sum_d w_d L(q[:, :d], d+[:, :d], d-[..., :d]) / sum_d w_d`` (eq. 1 at nested dims).

    Each truncated vector is re-normalised inside :func:`info_nce_logits`; ``None`` in ``dims`` means the full size.
    The paper trains Matryoshka dims but gives no weights (issue #111): equal weights by default.
    """
    if not dims:
        raise ValueError("dims is empty; give at least one dimension (None = full size)")
    weights = list(weights) if weights is not None else [1.0] * len(dims)
    if len(weights) != len(dims):
        raise ValueError(f"{len(weights)} weights for {len(dims)} dims; give one weight per dim")
    total = query.new_zeros(())
    for dim, weight in zip(dims, weights, strict=True):
        cut = slice(None) if dim is None else slice(0, dim)
        neg = negatives[..., cut] if negatives is not None else None
        total = total + weight * info_nce_loss(query[:, cut], positive[:, cut], neg, **options)
    return total / sum(weights)
