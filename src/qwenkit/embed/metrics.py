"""Retrieval metrics. ``evaluate_run`` scores with ``ir-measures`` (the trec_eval definitions); the pure functions
below are the same formulas written out, used to cross-check it and for in-loop evaluation without the dependency.

- ``nDCG@k = DCG@k / IDCG@k``, ``DCG@k = sum_{r=1..k} rel_r / log2(r + 1)`` (linear gain, trec_eval ``ndcg_cut``).
- ``MRR@k = 1 / rank of the first relevant document within the top k`` (0 when none).
- ``Recall@k = |relevant in top k| / |relevant|``.

Rankings sort by score descending; ties are broken by document id descending, as trec_eval does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]
MEASURES = ("nDCG@10", "RR@10", "R@100")


def ranking(scores: Mapping[str, float]) -> list[str]:
    """Document ids by score descending, ties by id descending (trec_eval's order)."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def ndcg_at_k(relevance: Mapping[str, int], scores: Mapping[str, float], k: int = 10) -> float:
    """``DCG@k / IDCG@k`` with linear gains (module docstring); 0 when the query has no relevant document."""
    ideal = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
    if idcg == 0:
        return 0.0
    dcg = sum(max(relevance.get(doc, 0), 0) / math.log2(r + 2) for r, doc in enumerate(ranking(scores)[:k]))
    return dcg / idcg


def mrr_at_k(relevance: Mapping[str, int], scores: Mapping[str, float], k: int = 10) -> float:
    for rank, doc in enumerate(ranking(scores)[:k], start=1):
        if relevance.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def recall_at_k(relevance: Mapping[str, int], scores: Mapping[str, float], k: int = 100) -> float:
    relevant = {d for d, g in relevance.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranking(scores)[:k])) / len(relevant)


def evaluate_run(qrels: Qrels, run: Run) -> dict[str, float]:
    """Mean ``nDCG@10``, ``MRR@10`` and ``R@100`` over the queries of ``qrels`` with ``ir-measures``."""
    import ir_measures
    from ir_measures import RR, R, nDCG

    missing = [q for q in qrels if q not in run]
    if missing:
        raise ValueError(f"{len(missing)} queries have no ranking in the run (first: {missing[:3]})")
    result = ir_measures.calc_aggregate([nDCG @ 10, RR @ 10, R @ 100], dict(qrels), dict(run))
    values = {str(m): float(v) for m, v in result.items()}
    return {"ndcg@10": values["nDCG@10"], "mrr@10": values["RR@10"], "recall@100": values["R@100"]}


def dense_run(query_ids: list[str], query_vectors: np.ndarray, doc_ids: list[str], doc_vectors: np.ndarray,
              k: int = 100) -> dict[str, dict[str, float]]:
    """Top-``k`` documents per query by dot product (cosine for normalised vectors)."""
    scores = query_vectors @ doc_vectors.T
    k = min(k, len(doc_ids))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return {qid: {doc_ids[j]: float(scores[i, j]) for j in top[i]} for i, qid in enumerate(query_ids)}


def per_query_ndcg(qrels: Qrels, run: Run, k: int = 10) -> dict[str, float]:
    """``nDCG@k`` of every query of ``qrels`` (``ir-measures``; a query missing from ``run`` scores 0)."""
    import ir_measures
    from ir_measures import nDCG

    scores = {q: 0.0 for q in qrels}
    for metric in ir_measures.iter_calc([nDCG @ k], dict(qrels), dict(run)):
        scores[metric.query_id] = float(metric.value)
    return scores


def paired_bootstrap_interval(differences: np.ndarray, *, confidence: float = 0.95, resamples: int = 10_000,
                              seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired per-query differences (Efron & Tibshirani 1993, ch. 13).

    Resample the ``n`` differences with replacement ``resamples`` times, take each resample's mean, and return the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those means. Seeded, so it is deterministic.
    """
    values = np.asarray(differences, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("differences must be a non-empty 1-D array")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)
