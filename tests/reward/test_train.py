import json

import pytest
import torch

from qwenkit.core.config import load_config
from qwenkit.reward.config import RewardTrainConfig
from qwenkit.reward.train import train_reward_model


def _config(**trainer):
    return load_config(RewardTrainConfig, {
        "model": {"size": "nano", "max_length": 64},
        "data": {"synthetic": {"train": {"adversarial": 96, "objective": 48, "subjective": 48},
                               "eval": {"adversarial": 24, "objective": 12, "subjective": 12}}},
        "batch_size": 8,
        "trainer": {"lr": 3e-3, "max_steps": 6, "log_every": 1, **trainer},
    })


def _weights(path):
    from safetensors.torch import load_file

    return load_file(path / "model" / "model.safetensors")


def test_training_learns_and_saves_a_transformers_reward_model(tmp_path):
    from transformers import AutoModelForSequenceClassification

    config = _config(max_steps=40)
    trained = train_reward_model(config, tmp_path / "run", quiet=True)
    losses = [h["loss"] for h in trained.history]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
    record = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert set(record["by_category"]) == {"adversarial", "objective", "subjective"}
    assert record["overall"]["pairs"] == 48
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "model")
    assert hf.config.pad_token_id == trained.model.pad_id
    metrics = trained.run.read_metrics()
    assert any("eval/adversarial/bt_loss" in m for m in metrics)


def test_resume_is_bit_identical(tmp_path):
    straight = train_reward_model(_config(max_steps=6), tmp_path / "straight", quiet=True)
    train_reward_model(_config(max_steps=3), tmp_path / "resumed", quiet=True)
    resumed = train_reward_model(_config(max_steps=6), tmp_path / "resumed", resume="must", quiet=True)
    assert resumed.history[0]["step"] == 4
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [h["loss"] for h in straight.history[3:]] == [h["loss"] for h in resumed.history]


def test_resume_refuses_a_changed_training_config(tmp_path):
    from qwenkit.core.errors import ResumeError

    train_reward_model(_config(max_steps=2), tmp_path / "run", quiet=True)
    changed = _config(max_steps=4)
    changed.batch_size = 4
    with pytest.raises(ResumeError, match="batch_size"):
        train_reward_model(changed, tmp_path / "run", resume="auto", quiet=True)


def test_lora_training_runs_and_keeps_the_base_frozen(tmp_path):
    config = _config(max_steps=3)
    config.lora.enabled = True
    config.lora.rank = 4
    trained = train_reward_model(config, tmp_path / "lora", quiet=True)
    trainable = [n for n, p in trained.model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or "score" in n for n in trainable)
    assert (tmp_path / "lora" / "model" / "model.safetensors").is_file()
