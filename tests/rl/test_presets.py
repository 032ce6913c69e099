"""--algorithm presets: file < preset < --set, one rule; sequence-level masks only when asked for."""

import pytest
import yaml

from qwenkit.cli import run_cli
from qwenkit.core.config import ConfigError, load_config
from qwenkit.rl.config import ALGORITHMS, RLConfig, apply_algorithm_preset

SORT3 = "src/qwenkit/rl/configs/gspo_sort3.yaml"
TINY = ["--set", "model.size=nano", "--set", "rollouts=1", "--set", "rollout.prompts=2", "--set",
        "rollout.group_size=2", "--set", "rollout.num_mini_batches=1", "--set", "eval_prompts=0", "--set",
        "sft.steps=0", "--set", "rollout.max_new_tokens=3", "-q", "--threads", "1"]


def test_preset_overrides_the_file_and_names_what_it_overrode():
    data = {"algorithm": {"level": "sequence", "rho": 1.0, "kl_coef": 0.01}}
    merged, overridden = apply_algorithm_preset(data, "grpo_8020")
    assert merged["algorithm"] == {**ALGORITHMS["grpo_8020"], "kl_coef": 0.01}
    assert "algorithm.level: 'sequence' -> 'token'" in overridden and "algorithm.rho: 1.0 -> 0.2" in overridden
    distinguishing = {"level", "clip_low", "clip_high", "aggregation", "rho"}
    assert all(set(preset) >= distinguishing for preset in ALGORITHMS.values())


def test_the_readme_example_trains_the_algorithm_it_names(tmp_path, capsys):
    out = tmp_path / "moe"
    assert run_cli(["rl", "train", "--config", SORT3, "--algorithm", "grpo_8020", "--set", "model.moe=true", *TINY,
                    "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["algorithm"]["level"] == "token" and saved["algorithm"]["rho"] == 0.2
    assert saved["algorithm"]["aggregation"] == "token-mean" and saved["model"]["moe"] is True
    assert "overrides the config file's algorithm.level" in capsys.readouterr().err
    out2 = tmp_path / "set"
    assert run_cli(["rl", "train", "--config", SORT3, "--algorithm", "grpo_8020", "--set", "algorithm.rho=0.5",
                    *TINY, "--out", str(out2)]) == 0
    assert yaml.safe_load((out2 / "config.yaml").read_text())["algorithm"]["rho"] == 0.5


def test_sequence_level_mask_needs_the_trl_option():
    with pytest.raises(ConfigError, match="trl_sequence_mask"):
        load_config(RLConfig, {"algorithm": {"level": "sequence", "rho": 0.2}})
    config = load_config(RLConfig, {"algorithm": {"level": "sequence", "rho": 0.2, "trl_sequence_mask": True}})
    assert config.algorithm.rho == 0.2
