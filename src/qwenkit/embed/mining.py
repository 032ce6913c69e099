"""BM25 retrieval and hard-negative mining (from BM25 or from the embedder itself) with a false-negative margin.

A mined candidate ``d`` for query ``q`` is kept as a hard negative when it is not the positive, its rank lies in
``[rank_start, rank_end)`` and, with model scores, ``s(q, d) <= s(q, d+) - false_negative_margin`` (candidates
scoring close to or above the positive are likely unlabelled positives; the paper's training-time mask uses the
same idea with ``s(q, d+) + 0.1``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_TOKEN = re.compile(r"[A-Za-z]+|\d+")


def code_tokens(text: str) -> list[str]:
    """Lower-cased word pieces; identifiers are split on ``_`` and camelCase (``getAttrName`` -> get attr name)."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return [t.lower() for t in _TOKEN.findall(spaced)]


class BM25Index:
    """A ``bm25s`` index over ``documents`` tokenized with :func:`code_tokens`."""

    def __init__(self, documents: Sequence[str]):
        import bm25s

        self.size = len(documents)
        self._index = bm25s.BM25()
        self._index.index([code_tokens(d) or ["<empty>"] for d in documents], show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores), each (len(queries), k), best first."""
        k = min(k, self.size)
        tokens = [code_tokens(q) or ["<empty>"] for q in queries]
        indices, scores = self._index.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return np.asarray(indices), np.asarray(scores)


def bm25_run(query_ids: list[str], queries: list[str], doc_ids: list[str], documents: list[str],
             k: int = 100) -> dict[str, dict[str, float]]:
    indices, scores = BM25Index(documents).search(queries, k)
    return {qid: {doc_ids[j]: float(s) for j, s in zip(indices[i], scores[i], strict=True)}
            for i, qid in enumerate(query_ids)}


def mine_bm25_negatives(queries: Sequence[str], positives: Sequence[str], *, num_negatives: int = 1,
                        rank_start: int = 2, rank_end: int = 12) -> list[list[int]]:
    """For each query, indices into ``positives`` (the training documents) of BM25 hard negatives."""
    index = BM25Index(positives)
    ranked, _ = index.search(queries, rank_end)
    return [_pick(i, ranked[i], positives, num_negatives, rank_start, None) for i in range(len(queries))]


def mine_model_negatives(query_vectors: np.ndarray, doc_vectors: np.ndarray, positives: Sequence[str], *,
                         num_negatives: int = 1, rank_start: int = 2, rank_end: int = 12,
                         false_negative_margin: float = 0.05) -> list[list[int]]:
    """Hard negatives from the embedder's own cosine ranking, skipping candidates within the margin of d+."""
    scores = query_vectors @ doc_vectors.T
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :rank_end]
    limits = np.diag(scores) - false_negative_margin
    return [_pick(i, ranked[i], positives, num_negatives, rank_start, (scores[i], limits[i]))
            for i in range(len(query_vectors))]


def _pick(i, candidates, positives, num_negatives, rank_start, model_scores) -> list[int]:
    picked: list[int] = []
    for rank, j in enumerate(candidates):
        j = int(j)
        if rank < rank_start or j == i or positives[j] == positives[i]:
            continue
        if model_scores is not None and model_scores[0][j] > model_scores[1]:
            continue
        picked.append(j)
        if len(picked) == num_negatives:
            break
    return picked
