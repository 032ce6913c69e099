"""The quick reproduction's plumbing at a tiny scale (in-process), and its per-task gain arithmetic."""

import json

import pytest

from qwenkit.core.repro import ReproContext, discover_repros
from qwenkit.core.runs import RunDir
from qwenkit.sft import repro


def test_gains_average_seeds_and_sign_conventions():
    results = [
        {"label": "t", "seed": 0, "target": "answer", "accuracy_sc": 0.2, "accuracy_greedy": 0.3, "ece_sc": 0.5,
         "ece_token": 0.1, "brier_sc": 0.3},
        {"label": "t", "seed": 0, "target": "rationale", "accuracy_sc": 0.6, "accuracy_greedy": 0.5, "ece_sc": 0.2,
         "ece_token": 0.1, "brier_sc": 0.2},
        {"label": "t", "seed": 1, "target": "answer", "accuracy_sc": 0.4, "accuracy_greedy": 0.3, "ece_sc": 0.3,
         "ece_token": 0.1, "brier_sc": 0.3},
        {"label": "t", "seed": 1, "target": "rationale", "accuracy_sc": 0.6, "accuracy_greedy": 0.5, "ece_sc": 0.2,
         "ece_token": 0.1, "brier_sc": 0.2},
    ]
    row = repro.gains(results)["t"]
    assert row["seeds"] == 2
    assert row["accuracy_gain"] == pytest.approx(0.6 - 0.3) and row["ece_gain"] == pytest.approx(0.4 - 0.2)


def _tiny_scale(monkeypatch):
    import qwenkit.core.system

    monkeypatch.setattr(qwenkit.core.system, "usable_cores", lambda: 1)
    monkeypatch.setattr(repro, "QUICK", {"seeds": 1, "steps": 2, "classification_steps": 1, "train_size": 8,
                                         "eval_size": 3, "size": "nano", "batch_size": 4})


def test_quick_arithmetic_half_runs_end_to_end_at_tiny_scale(tmp_path, monkeypatch):
    _tiny_scale(monkeypatch)
    monkeypatch.setattr(repro, "ARITHMETIC_TASKS", [("arith-1step", "arithmetic", {"steps": 1, "modulus": 10}),
                                                    ("arith-2step", "arithmetic", {"steps": 2, "modulus": 10})])
    run = RunDir(tmp_path / "repro")
    summary = repro.run_sft_repro(ReproContext(run=run, threads=1))
    assert isinstance(summary, str) and "arith-1step" in summary
    report = (run.path / "report.md").read_text()
    assert "Accuracy gain against ECE gain" in report and "arithmetic difficulty sweep" in report
    data = json.loads((run.path / "summary.json").read_text())
    assert set(data["tasks"]) == {"arith-1step", "arith-2step"} and data["smollm2"] == {}
    assert (run.path / "plots" / "gain_scatter.png").is_file() and (run.path / "plots" / "reliability.png").is_file()
    arms = json.loads((run.path / "arms.json").read_text())
    assert sorted((a["label"], a["target"]) for a in arms) == [
        ("arith-1step", "answer"), ("arith-1step", "rationale"),
        ("arith-2step", "answer"), ("arith-2step", "rationale")]


def test_quick_classification_half_runs_only_its_tasks(tmp_path, monkeypatch):
    _tiny_scale(monkeypatch)
    monkeypatch.setattr(repro, "CLASSIFICATION_TASKS", [("topic", "topic", {})])
    run = RunDir(tmp_path / "repro")
    repro.run_sft_classify_repro(ReproContext(run=run, threads=1))
    data = json.loads((run.path / "summary.json").read_text())
    assert set(data["tasks"]) == {"topic"} and data["fit"] is None
    assert "classification-like" in (run.path / "report.md").read_text()


def test_full_study_jobs_cover_every_task_seed_and_the_smollm2_lora_arms(tmp_path):
    ctx = ReproContext(run=RunDir(tmp_path / "full"), full=True, seed=0)
    jobs = repro._study_jobs(ctx, repro.ARITHMETIC_TASKS + repro.CLASSIFICATION_TASKS, repro.FULL, smollm2=True)
    tiny = [(label, config["target"], config["trainer"]["seed"]) for label, config, _ in jobs
            if config["model"]["path"] == "tiny-qwen3"]
    tasks = [t[0] for t in repro.ARITHMETIC_TASKS + repro.CLASSIFICATION_TASKS]
    assert sorted(tiny) == sorted((t, target, s) for t in tasks for target in ("answer", "rationale")
                                  for s in range(repro.FULL["seeds"]))
    smol = [config for label, config, _ in jobs if config["model"]["path"] == "smollm2"]
    assert len(smol) == 2 and all(c["lora"]["enabled"] for c in smol)
    assert {c["target"] for c in smol} == {"answer", "rationale"}


def test_line_is_not_judged_through_two_points():
    from qwenkit.sft.metrics import bootstrap_line_fit

    fit = bootstrap_line_fit([0.1, 0.3], [0.0, 0.2], resamples=50)
    assert "not judged" in repro._line_verdict(fit)


def test_gain_sd_is_over_paired_seeds():
    results = [{"label": "t", "target": target, "seed": seed, "accuracy_sc": acc, "accuracy_greedy": 0.0,
                "ece_sc": ece, "ece_token": 0.0, "brier_sc": 0.0}
               for seed, target, acc, ece in [(0, "answer", 0.2, 0.3), (0, "rationale", 0.6, 0.1),
                                              (1, "answer", 0.4, 0.3), (1, "rationale", 0.6, 0.2)]]
    row = repro.gains(results)["t"]
    # per-seed accuracy gains 0.4 and 0.2: sd = sqrt(((0.1)^2 + (0.1)^2) / 1); ECE gains 0.2 and 0.1
    assert row["accuracy_gain_sd"] == pytest.approx(2 ** 0.5 * 0.1)
    assert row["ece_gain_sd"] == pytest.approx(2 ** 0.5 * 0.05)


def test_registered_for_the_demo():
    repros = discover_repros()
    assert "sft-rationales" in repros and "sft-rationales-classify" in repros


def test_a_study_started_again_repeats_only_unfinished_arms(tmp_path, monkeypatch):
    import qwenkit.sft.pipeline

    config = repro.arm_config("topic", {}, "answer", seed=0, steps=2, train_size=8, eval_size=3, size="nano",
                              batch_size=4).model_dump(mode="json")
    out = str(tmp_path / "arm")
    first = repro.run_arm("topic", config, out)
    calls = []
    real = qwenkit.sft.pipeline.train_and_evaluate
    monkeypatch.setattr(qwenkit.sft.pipeline, "train_and_evaluate",
                        lambda *args, **kwargs: calls.append(kwargs) or real(*args, **kwargs))
    def same(a, b):  # empty reliability bins hold NaN accuracies, which never compare equal
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    assert same(repro.run_arm("topic", config, out), first) and calls == []
    # killed after training, before evaluation: no results.json, the final checkpoint is resumed, not retrained
    (tmp_path / "arm" / "results.json").unlink()
    again = repro.run_arm("topic", config, out)
    assert calls[-1]["resume"] == "auto" and same(again, first)
