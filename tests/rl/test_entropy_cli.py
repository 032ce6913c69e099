"""Entropy analysis and the `qwenkit rl` commands."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from qwenkit.rl.cli import app
from qwenkit.rl.config import RLConfig
from qwenkit.rl.entropy import analyze, entropy_stats, position_overlap
from qwenkit.rl.train import build_model_and_tokenizer


def test_entropy_stats_and_overlap():
    share, p80, mean = entropy_stats(torch.tensor([0.0, 0.005, 0.5, 1.0, 2.0]))
    assert abs(share - 0.4) < 1e-6 and abs(p80 - 1.2) < 1e-6 and abs(mean - 0.701) < 1e-6
    assert entropy_stats(torch.zeros(0)) == (0.0, 0.0, 0.0)
    entropy = torch.rand(4, 10, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(4, 10, dtype=torch.bool)
    assert position_overlap(entropy, entropy, mask, 0.2) == 1.0
    assert position_overlap(entropy, -entropy, mask, 0.2) == 0.0


def test_analyze_reports_forking_tokens_and_self_overlap():
    model, tokenizer = build_model_and_tokenizer(RLConfig(model={"size": "nano"}))
    result = analyze(model, tokenizer, ["S123=", "S987="] * 4, compare_model=model, max_new_tokens=5, top=5)
    assert result.tokens > 0 and len(result.forking) == 5
    assert result.forking[0]["entropy"] >= result.forking[-1]["entropy"]
    assert result.compare["top_position_overlap"] == 1.0  # a model overlaps itself completely
    assert abs(result.compare["p80"] - result.p80) < 1e-6


def test_cli_train_then_entropy(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--algorithm", "gspo_token", "--out", str(out), "--quiet", "--threads", "1",
        "--set", "model.size=nano", "--set", "rollouts=1", "--set", "rollout.prompts=4",
        "--set", "rollout.group_size=2",
        "--set", "rollout.num_mini_batches=2", "--set", "eval_prompts=2", "--set", "sft.steps=2",
    ])
    assert result.exit_code == 0, result.output
    assert (out / "report.md").exists() and (out / "metrics.jsonl").exists()
    assert "sequence_token" in (out / "config.yaml").read_text()
    result = runner.invoke(app, ["entropy", "--model", str(out), "--compare", str(out / "sft"), "--data", "sort3",
                                 "--prompts", "4", "--max-new-tokens", "4", "--out", str(tmp_path / "ent"), "-q"])
    assert result.exit_code == 0, result.output
    assert "below 0.01" in result.output and (tmp_path / "ent" / "report.md").exists()
    bad = runner.invoke(app, ["train", "--algorithm", "ppo", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0
