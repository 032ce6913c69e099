"""Evaluation of an embedder (and optionally a reranker) on a :class:`~qwenkit.embed.data.RetrievalTask`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from qwenkit.embed.metrics import dense_run, evaluate_run, per_query_ndcg
from qwenkit.embed.mining import bm25_run

if TYPE_CHECKING:
    from qwenkit.embed.data import RetrievalTask
    from qwenkit.embed.embedder import Embedder
    from qwenkit.embed.reranker import Reranker


def renormalised(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    """Matryoshka on numpy rows: ``v[:dim] / ||v[:dim]||``."""
    cut = vectors if dim is None else vectors[:, :dim]
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


def evaluate_embedder(embedder: Embedder, task: RetrievalTask, *, dims: Sequence[int | None] = (None,),
                      batch_size: int = 32, query_max_length: int | None = None,
                      doc_max_length: int | None = None, use_instruction: bool = True,
                      per_query: dict[str, float] | None = None) -> dict[int, dict[str, float]]:
    """nDCG@10 / MRR@10 / R@100 at each Matryoshka dim (corpus and queries are embedded once, at full size).

    ``per_query``, when given, is filled with every query's nDCG@10 at the full dimension (for paired intervals).
    """
    query_ids, doc_ids = list(task.queries), list(task.corpus)
    queries = embedder.encode([task.queries[q] for q in query_ids],
                              instruction=task.instruction if use_instruction else None,
                              batch_size=batch_size, max_length=query_max_length)
    docs = embedder.encode([task.corpus[d] for d in doc_ids], batch_size=batch_size, max_length=doc_max_length)
    full = queries.shape[1]
    results = {}
    for dim in dims:
        size = full if dim is None else min(dim, full)
        run = dense_run(query_ids, renormalised(queries, size), doc_ids, renormalised(docs, size))
        results[size] = evaluate_run(task.qrels, run)
        if per_query is not None and size == full:
            per_query.update(per_query_ndcg(task.qrels, run))
    return results


def evaluate_bm25(task: RetrievalTask) -> dict[str, float]:
    query_ids, doc_ids = list(task.queries), list(task.corpus)
    run = bm25_run(query_ids, [task.queries[q] for q in query_ids], doc_ids, [task.corpus[d] for d in doc_ids])
    return evaluate_run(task.qrels, run)


def evaluate_with_reranker(embedder: Embedder, reranker: Reranker, task: RetrievalTask, *, top_k: int = 10,
                           batch_size: int = 8, instruction: str | None = None,
                           embed_instruction: bool = False) -> dict[str, dict[str, float]]:
    """Embedder-only vs embedder + reranker (the reranker re-scores the embedder's top ``top_k`` per query).

    ``instruction`` goes to the reranker (None: the task's); the embedder's queries get the task's instruction only
    with ``embed_instruction`` (MiniLM-style encoders are not instruction-tuned).
    """
    query_ids, doc_ids = list(task.queries), list(task.corpus)
    queries = embedder.encode([task.queries[q] for q in query_ids],
                              instruction=task.instruction if embed_instruction else None)
    docs = embedder.encode([task.corpus[d] for d in doc_ids])
    run = dense_run(query_ids, queries, doc_ids, docs)
    reranked = {}
    for qid, scores in run.items():
        top = sorted(scores, key=scores.get, reverse=True)[:top_k]
        probabilities = reranker.score(task.queries[qid], [task.corpus[d] for d in top],
                                       instruction=instruction or task.instruction, batch_size=batch_size)
        # reranked documents stay above the rest of the embedder's list: offset by 2 (probabilities lie in [0, 1])
        reranked[qid] = {d: s - 2.0 for d, s in scores.items() if d not in top}
        reranked[qid].update({d: float(p) + 2.0 for d, p in zip(top, probabilities, strict=True)})
    return {"embedder": evaluate_run(task.qrels, run), "embedder+reranker": evaluate_run(task.qrels, reranked)}
