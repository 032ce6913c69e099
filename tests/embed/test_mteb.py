from __future__ import annotations

import pytest
from typer.testing import CliRunner

from qwenkit.embed.data import RetrievalTask
from qwenkit.embed.embedder import Embedder
from qwenkit.embed.evaluate import evaluate_embedder

pytest.importorskip("mteb")

DOCS = ["add two numbers", "sort a list", "read a file", "cats purr", "dogs bark", "paris is in france", "x"]
QUERIES = {"q0": "sum", "q1": "order items", "q2": "open path", "q3": "barking animal", "q4": "french city"}
QRELS = {"q0": {"d0": 1}, "q1": {"d1": 2, "d2": 1}, "q2": {"d2": 1}, "q3": {"d4": 1}, "q4": {"d5": 1}}


def test_mteb_scores_equal_ours_on_a_tiny_corpus(tiny_lm):
    from qwenkit.embed.mteb_tasks import mteb_task, run_mteb

    model, tokenizer = tiny_lm  # a random model: the ranking is far from perfect, so the metrics are informative
    task = RetrievalTask("toy", "Find it", [], [], QUERIES, {f"d{i}": t for i, t in enumerate(DOCS)}, QRELS)
    assert mteb_task(task).metadata.name == "QwenkitToyRetrieval"
    embedder = Embedder(model, tokenizer, max_length=32)
    ours = evaluate_embedder(embedder, task)[32]
    theirs = run_mteb(embedder, [task])["toy"]
    assert 0 < ours["ndcg@10"] < 1
    assert theirs["ndcg_at_10"] == pytest.approx(ours["ndcg@10"], abs=1e-4)
    assert theirs["mrr_at_10"] == pytest.approx(ours["mrr@10"], abs=1e-4)
    assert theirs["recall_at_100"] == pytest.approx(ours["recall@100"], abs=1e-4)
    without = run_mteb(embedder, [task], use_instruction=False)["toy"]
    assert without["ndcg_at_10"] == pytest.approx(evaluate_embedder(embedder, task, use_instruction=False)[32]
                                                  ["ndcg@10"], abs=1e-4)


def test_eval_command_with_mteb(tiny_lm, stdlib_cache, tmp_path):
    from qwenkit.embed.cli import app

    model, tokenizer = tiny_lm
    path = Embedder(model, tokenizer, max_length=24).save_pretrained(tmp_path / "m")
    result = CliRunner().invoke(app, ["eval", str(path), "--mteb", "--no-bm25", "--max-queries", "5", "--dims", "32",
                                      "--cache-dir", str(stdlib_cache), "--out", str(tmp_path / "e"), "--quiet"])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "e" / "report.md").read_text()
    assert "mteb.evaluate" in report and "ndcg_at_10" in report
