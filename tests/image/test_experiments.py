"""The experiment drivers behind the quick demo and ``--full`` (tiny sizes), and the fixed-look T2I options."""

import json

import pytest
import torch
import yaml

torch.set_num_threads(1)


def test_fixed_colours_and_font_in_renders_and_config():
    from qwenkit.core.config import ConfigError, load_config
    from qwenkit.image.synth import make_spec
    from qwenkit.image.train import ImageTrainConfig, batch_maker

    sample = make_spec(0, 3, "glyph", width=16, height=16, fg="black", bg="white", font="DejaVuSans-Bold")
    assert (sample.spec.fg, sample.spec.bg) == ("black", "white")
    assert sample.spec.font.endswith("DejaVuSans-Bold.ttf")
    with pytest.raises(ValueError, match="NoSuchFont"):
        make_spec(0, 3, "glyph", width=16, height=16, font="NoSuchFont")
    with pytest.raises(ConfigError, match="mauve"):
        load_config(ImageTrainConfig, {"fg": "mauve"})
    config = load_config(ImageTrainConfig, {"width": 16, "height": 16, "batch_size": 4, "fg": "black", "bg": "white",
                                            "font": "DejaVuSans-Bold", "curriculum": False})
    batch = batch_maker(config)(0)
    assert all(p.endswith("black on white") for p in batch["prompts"])


def test_t2i_arm_and_e2_small_write_results(tmp_path):
    from qwenkit.image.experiments import Plan, e2, quick_config, run_t2i_arm

    config = quick_config(4, 2, 0, codec_fit_samples=32)
    arm = run_t2i_arm("a", config, tmp_path / "out", tmp_path / "work", eval_n=2, final_n=3, sample_steps=2,
                      cfg_scale=3.0, save_model=False)
    assert arm["steps"] == 4 and [c["step"] for c in arm["curve"]] == [2, 4] and arm["final"]["n"] == 3
    assert (tmp_path / "out" / "plots" / "samples_a.png").is_file()
    arms = e2(Plan(out=tmp_path / "res", work=tmp_path / "work", steps=2, eval_every=2, eval_n=2, final_n=2,
                   sample_steps=2, small=True))
    assert [a["arm"] for a in arms] == ["curriculum", "direct"]
    saved = json.loads((tmp_path / "res" / "image_e2_small" / "result.json").read_text())
    assert saved[0]["config"]["schedule"]["phases"][0]["mix"] == {"non_text": 1.0}
    assert (tmp_path / "res" / "image_e2_small" / "report.md").is_file()


def test_edit_arms_share_one_budget_and_report_the_tradeoff(tmp_path):
    from qwenkit.image.experiments import Plan, e3, edit_study, edit_task_config, quick_config, run_edit_arm

    row = run_edit_arm("vae", quick_config(2, 0, 0, codec_fit_samples=32), tmp_path / "out", tmp_path / "work", n=3,
                       sample_steps=2)
    assert row["conditioning"] == "vae" and row["steps"] == 2 and row["n"] == 3 and len(row["shown_pairs"]) == 3
    assert {"psnr_to_target", "psnr_outside_edit", "by_kind"} <= set(row) and "ocr_success" not in row
    assert (tmp_path / "out" / "plots" / "edit_vae.png").is_file()
    rows = e3(Plan(out=tmp_path / "res", work=tmp_path / "work", steps=2, final_n=2, sample_steps=2))
    assert [r["conditioning"] for r in rows] == ["dual", "semantic", "vae"]
    report = (tmp_path / "res" / "image_e3" / "report.md").read_text()
    assert "edit_tradeoff.png" in report and (tmp_path / "res" / "image_e3" / "plots" / "edit_tradeoff.png").is_file()
    for conditioning in ("dual", "semantic", "vae"):  # equal budgets: every arm trains on edit pairs only
        config = yaml.safe_load((tmp_path / "work" / "e3" / conditioning / "config.yaml").read_text())
        assert config["tasks"] == {"ti2i": 1.0} and config["edit_conditioning"] == conditioning
    rows = edit_study("t", "intro.", edit_task_config(2, 0, codec_fit_samples=32), tmp_path / "study",
                      tmp_path / "work2", n=4, sample_steps=2)
    saved = json.loads((tmp_path / "study" / "result.json").read_text())
    assert [r["conditioning"] for r in saved["reference"]] == ["ground truth", "no edit"]
    truth, copy = saved["reference"]
    assert truth["by_kind"]["color"]["colour_applied"] == 1.0 and copy["by_kind"]["color"]["colour_applied"] == 0.0
    report = (tmp_path / "study" / "report.md").read_text()
    assert "`colour_applied`:" in report and "`glyph_colour_error`:" in report and "**dual** (2 steps)" in report


def test_quick_arms_run_in_worker_processes_in_order():
    """The quick reproduction trains its arms two at a time in spawned workers; results come back in job order."""
    import operator

    from qwenkit.image.repro import _run_arms

    jobs = [(operator.add, (1, 2), {}), (operator.mul, (3, 4), {}), (pow, (2,), {"exp": 5})]
    assert _run_arms(jobs) == [3, 12, 32]
