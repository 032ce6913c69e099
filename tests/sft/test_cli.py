"""`qwenkit sft train / evaluate / rationales` end to end on a nano model (a few steps; checks files and resume)."""

import json

from qwenkit.cli import run_cli
from qwenkit.sft.data import load_records

SMALL = ["--set", "model.size=nano", "--set", "data.train_size=16", "--set", "data.eval_size=4",
         "--set", "trainer.max_steps=3", "--set", "batch_size=4", "--set", "evaluation.samples=2",
         "--set", "evaluation.max_new_tokens=8", "--quiet"]


def test_train_evaluate_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["sft", "train", "--out", str(out), *SMALL]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 4 and 0 <= results["ece_sc"] <= 1 and len(results["bins_sc"]) == 10
    assert (out / "report.md").is_file() and (out / "model" / "config.json").is_file()
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 4
    assert run_cli(["sft", "train", "--out", str(out), *SMALL]) == 2  # a finished run is not overwritten
    assert "--resume" in capsys.readouterr().err
    assert run_cli(["sft", "train", "--out", str(out), "--resume", *SMALL, "--set", "trainer.max_steps=4",
                    "--set", "evaluation.samples=3"]) == 0
    assert [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if "loss" in r] == [1, 2, 3, 4]
    data = tmp_path / "eval.jsonl"
    data.write_text(json.dumps({"question": "Ann has 3. Gets 4. How many now?", "answer": 7}) + "\n")
    assert run_cli(["sft", "evaluate", "--model", str(out / "model"), "--data", str(data), "--out",
                    str(tmp_path / "ev"), "--set", "samples=2", "--set", "max_new_tokens=8", "--quiet"]) == 0
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["n"] == 1


def test_rationales_with_a_local_model(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": 2}) + "\n")
    out = tmp_path / "with_rationales.jsonl"
    argv = ["sft", "rationales", "--data", str(data), "--out", str(out), "--model", "tiny-qwen3", "--tries", "2",
            "--max-tokens", "6", "--quiet"]
    assert run_cli(argv) == 0
    stats = json.loads((tmp_path / "with_rationales.jsonl.yield.json").read_text())
    assert stats["questions"] == 1 and 1 <= stats["calls"] <= 2 and stats["cached"] == 0
    assert run_cli(argv) == 0  # again: every call comes from the cache
    again = json.loads((tmp_path / "with_rationales.jsonl.yield.json").read_text())
    assert again["calls"] == 0 and again["cached"] == stats["calls"]
    if again["kept"]:
        assert load_records(out)[0].rationale
