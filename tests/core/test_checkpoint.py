import json

import numpy as np
import pytest
import torch

from qwenkit.core.checkpoint import (
    CheckpointError,
    atomic_write_text,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def _optimizer_state():
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_round_trip_is_exact(tmp_path):
    model, optimizer = _optimizer_state()
    state = {
        "optimizer": optimizer.state_dict(),
        "numbers": (1, 2.5, None, "x"),
        "array": np.arange(6, dtype=np.int16).reshape(2, 3),
    }
    path = save_checkpoint(tmp_path, 7, model.state_dict(), state)
    loaded = load_checkpoint(path)
    assert loaded.step == 7
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model[key], value)
    original = optimizer.state_dict()
    assert loaded.state["optimizer"]["param_groups"] == original["param_groups"]
    for index, slots in original["state"].items():
        for name, value in slots.items():
            assert torch.equal(loaded.state["optimizer"]["state"][index][name], value)
    assert loaded.state["numbers"] == (1, 2.5, None, "x")
    assert torch.equal(loaded.state["array"], torch.arange(6, dtype=torch.int16).reshape(2, 3))
    fresh = torch.optim.AdamW(torch.nn.Linear(4, 3).parameters(), lr=0.1)
    fresh.load_state_dict(loaded.state["optimizer"])


def test_latest_pointer_and_retention(tmp_path):
    model = torch.nn.Linear(2, 2)
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model.state_dict(), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
    assert latest_checkpoint(tmp_path).name == "step-00000004"
    assert load_checkpoint(tmp_path).step == 4


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, 1, torch.nn.Linear(8, 8).state_dict())
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, 1, torch.nn.Linear(8, 8).state_dict())
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="meta.json"):
        load_checkpoint(path)


def test_missing_and_empty(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "latest").write_text("step-00000009\n")
    with pytest.raises(CheckpointError, match="does not exist"):
        latest_checkpoint(tmp_path)


def test_half_written_checkpoint_is_ignored(tmp_path):
    save_checkpoint(tmp_path, 1, torch.nn.Linear(2, 2).state_dict())
    (tmp_path / ".step-00000002.abc").mkdir()  # what a kill during save leaves behind
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000001"]


def test_atomic_write_text(tmp_path):
    target = tmp_path / "sub" / "file.json"
    atomic_write_text(target, json.dumps({"a": 1}))
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]
