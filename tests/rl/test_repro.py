"""The reproduction's code path end to end at a tiny scale (the real one runs in `qwenkit demo`)."""

from __future__ import annotations

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
    for needle in ("GSPO-token reproduces GSPO", "reward_dense.png", "reward_moe.png", "clip_fraction.png"):
        assert needle in report
