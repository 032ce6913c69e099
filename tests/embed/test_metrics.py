from __future__ import annotations

import math

import numpy as np
import pytest

from qwenkit.embed.metrics import dense_run, evaluate_run, mrr_at_k, ndcg_at_k, recall_at_k


def graded_fixture(seed=0, queries=12, docs=40):
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for q in range(queries):
        relevant = rng.choice(docs, size=int(rng.integers(1, 6)), replace=False)
        qrels[f"q{q}"] = {f"d{d}": int(rng.integers(1, 4)) for d in relevant}
        scores = rng.permutation(docs).astype(float) + 0.5 * rng.random(docs)  # no ties
        run[f"q{q}"] = {f"d{d}": float(s) for d, s in enumerate(scores)}
    return qrels, run


def test_ndcg_hand_computed():
    relevance = {"a": 3, "b": 1}
    scores = {"x": 0.9, "a": 0.8, "b": 0.1}
    dcg = 3 / math.log2(3) + 1 / math.log2(4)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(relevance, scores, 10) == pytest.approx(dcg / idcg)
    assert mrr_at_k(relevance, scores, 10) == 0.5
    assert recall_at_k(relevance, scores, 2) == 0.5
    assert ndcg_at_k({}, scores) == 0.0


def test_metrics_match_ir_measures_on_graded_fixture():
    qrels, run = graded_fixture()
    ours = {
        "ndcg@10": np.mean([ndcg_at_k(qrels[q], run[q], 10) for q in qrels]),
        "mrr@10": np.mean([mrr_at_k(qrels[q], run[q], 10) for q in qrels]),
        "recall@100": np.mean([recall_at_k(qrels[q], run[q], 100) for q in qrels]),
    }
    reference = evaluate_run(qrels, run)
    for name, value in ours.items():
        assert value == pytest.approx(reference[name], abs=1e-9), name
    assert 0 < reference["ndcg@10"] < 1


def test_dense_run_and_missing_queries():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    d = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    run = dense_run(["a", "b"], q, ["x", "y", "z"], d, k=2)
    assert set(run["a"]) == {"y", "z"} and run["a"]["y"] == 1.0
    with pytest.raises(ValueError, match="no ranking"):
        evaluate_run({"c": {"x": 1}}, run)


def test_evaluate_with_reranker_on_tiny_models(tiny_lm):
    from qwenkit.embed.data import RetrievalTask
    from qwenkit.embed.embedder import Embedder
    from qwenkit.embed.evaluate import evaluate_embedder, evaluate_with_reranker
    from qwenkit.embed.reranker import Reranker

    model, tokenizer = tiny_lm
    docs = {f"d{i}": text for i, text in enumerate(["add two numbers", "sort a list", "read a file", "cats", "dogs"])}
    queries = {"q0": "sum", "q1": "order items", "q2": "open path"}
    task = RetrievalTask("toy", "Find it", [], [], queries, docs, {"q0": {"d0": 1}, "q1": {"d1": 2}, "q2": {"d2": 1}})
    embedder = Embedder(model, tokenizer, max_length=64)
    result = evaluate_with_reranker(embedder, Reranker(model, tokenizer, max_length=300), task, top_k=3,
                                    embed_instruction=True)
    assert result["embedder"] == evaluate_embedder(embedder, task)[32]
    assert set(result["embedder+reranker"]) == {"ndcg@10", "mrr@10", "recall@100"}
    assert result["embedder+reranker"]["recall@100"] == 1.0


def test_paired_bootstrap_interval():
    from qwenkit.embed.metrics import paired_bootstrap_interval

    assert paired_bootstrap_interval(np.full(50, 0.25)) == (0.25, 0.25)
    rng = np.random.default_rng(1)
    differences = rng.normal(0.1, 0.5, size=2000)
    low, high = paired_bootstrap_interval(differences)
    half_width = 1.96 * differences.std(ddof=1) / np.sqrt(differences.size)  # normal approximation, large n
    assert low < differences.mean() < high
    assert abs((high - low) / 2 - half_width) < 0.1 * half_width
    assert paired_bootstrap_interval(differences) == (low, high)
    with pytest.raises(ValueError, match="non-empty"):
        paired_bootstrap_interval(np.array([]))


def test_per_query_ndcg_matches_the_formula():
    from qwenkit.embed.metrics import ndcg_at_k, per_query_ndcg

    qrels = {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 1}, "q3": {"d9": 1}}
    run = {"q1": {"d1": 0.1, "d2": 0.9}, "q2": {"d3": 0.8, "d2": 0.5, "d1": 0.1}, "q3": {"d1": 0.3}}
    got = per_query_ndcg(qrels, run)
    assert got == pytest.approx({q: ndcg_at_k(qrels[q], run[q]) for q in qrels})
    assert got["q3"] == 0.0
