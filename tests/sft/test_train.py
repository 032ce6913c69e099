"""Training through core.loop: exact resume, warm-up + cosine, LoRA, packing."""

import pytest
import torch

from qwenkit.core.config import load_config
from qwenkit.core.errors import ConfigError
from qwenkit.core.loop import lr_factor
from qwenkit.sft.config import SFTConfig, resolved_trainer
from qwenkit.sft.tasks import make_task
from qwenkit.sft.train import train_records

RECORDS = make_task("arithmetic", 24, seed=0, steps=1, modulus=10)


def _config(**overrides):
    data = {"model": {"size": "nano"}, "data": {"task": "arithmetic", "max_length": 128}, "batch_size": 4,
            "trainer": {"max_steps": 6, "lr": 3e-3, "checkpoint_every": 3}}
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            data.setdefault(section, {})[name] = value
        else:
            data[section] = value
    return load_config(SFTConfig, data)


class Killed(Exception):
    pass


def _kill_after_step_4(state):
    if state.step == 4:
        raise Killed


def test_killed_and_resumed_run_is_bit_identical(tmp_path):
    full = train_records(_config(), RECORDS, tmp_path / "full", save_model=False)
    with pytest.raises(Killed):  # dies after step 4; the last checkpoint is step 3
        train_records(_config(), RECORDS, tmp_path / "part", save_model=False, callbacks=[_kill_after_step_4])
    resumed = train_records(_config(), RECORDS, tmp_path / "part", resume="must", save_model=False)
    assert resumed.history[0]["step"] == 4
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert [h["loss"] for h in full.history[3:]] == [h["loss"] for h in resumed.history]


def test_warmup_and_cosine_schedule():
    trainer = resolved_trainer(_config(trainer__max_steps=100, warmup_ratio=0.05), batches_per_epoch=10)
    assert trainer.warmup_steps == 5 and trainer.lr_schedule == "cosine"
    assert lr_factor(0, trainer) == pytest.approx(0.2) and lr_factor(4, trainer) == pytest.approx(1.0)
    assert lr_factor(5, trainer) == pytest.approx(1.0) and lr_factor(99, trainer) < 0.01
    epochs = resolved_trainer(_config(epochs=3, warmup_ratio=None), batches_per_epoch=6)
    assert epochs.max_steps == 18 and epochs.warmup_steps == 0
    with pytest.raises(ConfigError, match="warm-up"):
        resolved_trainer(_config(trainer__max_steps=4, trainer__warmup_steps=4, warmup_ratio=None), 10)


def test_lora_trains_only_adapters_and_merges(tmp_path):
    config = _config(lora={"enabled": True, "r": 4, "target_modules": ["q_proj", "v_proj"]},
                     trainer__max_steps=3, trainer__lr=1e-2)
    from qwenkit.sft.train import load_model

    base, _, _ = load_model(_config())
    result = train_records(config, RECORDS, tmp_path / "lora")
    merged = result.model.state_dict()
    before = base.state_dict()
    changed = {k for k in before if not torch.equal(before[k], merged[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)
    assert (result.model_dir / "config.json").is_file() and not any("lora" in k for k in merged)


def test_packed_training_runs_and_counts_the_same_targets(tmp_path):
    plain = train_records(_config(trainer__max_steps=2), RECORDS, tmp_path / "plain", save_model=False)
    packed = train_records(_config(trainer__max_steps=2, data={"task": "arithmetic", "packing": True,
                                                                "max_length": 256}),
                           RECORDS, tmp_path / "packed", save_model=False)
    assert packed.history[0]["target_tokens"] > plain.history[0]["target_tokens"]  # more examples per row
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in packed.history)


def test_config_requires_one_data_source():
    with pytest.raises(ConfigError, match="exactly one of data.train"):
        load_config(SFTConfig, {"data": {"task": "topic", "train": "x.jsonl"}})
    with pytest.raises(ConfigError, match="rationale_template"):
        load_config(SFTConfig, {"rationale_template": "{answer}"})
