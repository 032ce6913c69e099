"""The quick reproduction's plumbing at a tiny scale (in-process), and its per-task gain arithmetic."""

import json

import pytest

from qwenkit.core.repro import ReproContext, discover_repros
from qwenkit.core.runs import RunDir
from qwenkit.sft import repro


def test_gains_average_seeds_and_sign_conventions():
    results = [
        {"label": "t", "target": "answer", "accuracy_sc": 0.2, "accuracy_greedy": 0.3, "ece_sc": 0.5,
         "ece_token": 0.1, "brier_sc": 0.3},
        {"label": "t", "target": "rationale", "accuracy_sc": 0.6, "accuracy_greedy": 0.5, "ece_sc": 0.2,
         "ece_token": 0.1, "brier_sc": 0.2},
        {"label": "t", "target": "answer", "accuracy_sc": 0.4, "accuracy_greedy": 0.3, "ece_sc": 0.3,
         "ece_token": 0.1, "brier_sc": 0.3},
        {"label": "t", "target": "rationale", "accuracy_sc": 0.6, "accuracy_greedy": 0.5, "ece_sc": 0.2,
         "ece_token": 0.1, "brier_sc": 0.2},
    ]
    row = repro.gains(results)["t"]
    assert row["seeds"] == 2
    assert row["accuracy_gain"] == pytest.approx(0.6 - 0.3) and row["ece_gain"] == pytest.approx(0.4 - 0.2)


def test_quick_repro_runs_end_to_end_at_tiny_scale(tmp_path, monkeypatch):
    import qwenkit.core.system

    monkeypatch.setattr(qwenkit.core.system, "usable_cores", lambda: 1)
    monkeypatch.setattr(repro, "QUICK", {"seeds": 1, "steps": 2, "classification_steps": 1, "train_size": 8,
                                         "eval_size": 3, "size": "nano"})
    monkeypatch.setattr(repro, "QUICK_TASKS", [("arith-1step", "arithmetic", {"steps": 1, "modulus": 10}),
                                               ("topic", "topic", {})])
    run = RunDir(tmp_path / "repro")
    summary = repro.run_sft_repro(ReproContext(run=run, threads=1))
    assert isinstance(summary, str) and summary
    report = (run.path / "report.md").read_text()
    assert "Accuracy gain against ECE gain" in report and "linear correspondence" in report
    data = json.loads((run.path / "summary.json").read_text())
    assert set(data["tasks"]) == {"arith-1step", "topic"}
    assert (run.path / "plots" / "gain_scatter.png").is_file() and (run.path / "plots" / "reliability.png").is_file()


def test_registered_for_the_demo():
    assert "sft-rationales" in discover_repros()
