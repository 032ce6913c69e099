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


def test_tied_weights_are_stored_once_and_come_back_tied(tmp_path):
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

    model = tiny_qwen3_for(build_synthetic_tokenizer(), "nano")
    state = model.state_dict()
    assert state["lm_head.weight"].data_ptr() == state["model.embed_tokens.weight"].data_ptr()
    path = save_checkpoint(tmp_path, 1, state)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["tied"] == {"lm_head.weight": "model.embed_tokens.weight"}
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as f:
        stored = list(f.keys())
    assert "lm_head.weight" not in stored
    loaded = load_checkpoint(path)
    assert torch.equal(loaded.model["lm_head.weight"], state["lm_head.weight"])
    fresh = tiny_qwen3_for(build_synthetic_tokenizer(), "nano", seed=5)
    fresh.load_state_dict(loaded.model)
    ids = torch.tensor([[3, 4, 5]])
    torch.testing.assert_close(fresh(ids).logits, model(ids).logits)


def test_optimizer_state_has_its_own_file(tmp_path):
    model, optimizer = _optimizer_state()
    path = save_checkpoint(tmp_path, 3, model.state_dict(), {"extra": 1}, optimizer_state=optimizer.state_dict())
    assert {p.name for p in path.iterdir()} == {"model.safetensors", "optimizer.safetensors", "state.safetensors",
                                                "meta.json"}
    loaded = load_checkpoint(path)
    assert loaded.state == {"extra": 1}
    fresh = torch.optim.AdamW(torch.nn.Linear(4, 3).parameters(), lr=0.1)
    fresh.load_state_dict(loaded.optimizer)
    for index, value in optimizer.state_dict()["state"].items():
        assert torch.equal(fresh.state_dict()["state"][index]["exp_avg"], value["exp_avg"])


def test_keep_last_prunes_only_after_the_new_checkpoint_verifies(tmp_path, monkeypatch):
    import qwenkit.core.checkpoint as checkpoint_module

    for step in (1, 2):
        save_checkpoint(tmp_path, step, {"w": torch.zeros(3)}, keep=2)

    def broken(path):
        raise CheckpointError("simulated corrupt write")

    monkeypatch.setattr(checkpoint_module, "verify_checkpoint", broken)
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path, 3, {"w": torch.zeros(3)}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000001", "step-00000002", "step-00000003"]
    monkeypatch.undo()
    save_checkpoint(tmp_path, 4, {"w": torch.zeros(3)}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003", "step-00000004"]
