"""start_run: validated configs only, resume that cannot surprise, leftovers of killed runs removed."""

import pytest
import torch

from qwenkit.core.checkpoint import list_checkpoints, save_checkpoint
from qwenkit.core.config import StrictModel
from qwenkit.core.errors import QwenkitError, ResumeError
from qwenkit.core.loop import TrainConfig, train_loop
from qwenkit.core.runs import RunDir, changed_fields, normalize_resume, start_run


class _Config(StrictModel):
    group_size: int = 8
    lr: float = 1e-3
    trainer: TrainConfig = TrainConfig(max_steps=4)


def _checkpointed_run(path):
    run = start_run(path, _Config())
    save_checkpoint(run.checkpoints_dir, 1, {"w": torch.zeros(2)})
    return run


def test_new_run_writes_config_and_refuses_an_existing_run(tmp_path):
    run = start_run(tmp_path / "r", _Config())
    assert run.config_path.is_file()
    save_checkpoint(run.checkpoints_dir, 1, {"w": torch.zeros(2)})
    with pytest.raises(ResumeError, match="already holds a run"):
        start_run(tmp_path / "r", _Config())


def test_resume_without_checkpoint_says_so_or_refuses(tmp_path, capsys):
    start_run(tmp_path / "a", _Config(), resume="auto")
    assert "starting from step 0" in capsys.readouterr().err
    with pytest.raises(ResumeError, match="no checkpoint"):
        start_run(tmp_path / "b", _Config(), resume="must")


def test_resume_with_a_changed_config_lists_the_fields(tmp_path):
    _checkpointed_run(tmp_path / "r")
    with pytest.raises(ResumeError) as info:
        start_run(tmp_path / "r", _Config(group_size=4, lr=2e-3), resume=True)
    message = str(info.value)
    assert "group_size: 8 -> 4" in message and "lr: 0.001 -> 0.002" in message
    assert isinstance(info.value, QwenkitError)


def test_resume_accepts_fields_that_may_change(tmp_path):
    _checkpointed_run(tmp_path / "r")
    longer = _Config(trainer=TrainConfig(max_steps=40, checkpoint_every=5))
    start_run(tmp_path / "r", longer, resume="must")
    start_run(tmp_path / "r", _Config(lr=5e-3, trainer=TrainConfig(max_steps=40, checkpoint_every=5)), resume=True,
              may_change=["lr"])


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    run = _checkpointed_run(tmp_path / "r")
    stale = run.checkpoints_dir / ".step-00000002.abc123"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    torn = run.path / ".config.yaml.xyz.tmp"
    torn.write_text("half")
    start_run(tmp_path / "r", _Config(), resume=True)
    assert not stale.exists() and not torn.exists()
    assert [p.name for p in list_checkpoints(run.checkpoints_dir)] == ["step-00000001"]


def test_train_loop_removes_leftovers_and_honours_must(tmp_path):
    run = RunDir(tmp_path / "r")
    (run.checkpoints_dir / ".step-00000009.zz").mkdir(parents=True)
    model = torch.nn.Linear(2, 1)

    def step(m, batch):
        return m(batch).pow(2).mean(), {}

    with pytest.raises(ResumeError, match="no checkpoint"):
        train_loop(model, step, lambda i: torch.ones(4, 2), TrainConfig(max_steps=2), run=run, resume="must",
                   quiet=True)
    assert not (run.checkpoints_dir / ".step-00000009.zz").exists()


def test_normalize_resume_and_changed_fields():
    assert normalize_resume(True) == normalize_resume("auto") == "auto"
    assert normalize_resume(None) is normalize_resume(False) is None
    with pytest.raises(ResumeError, match="--resume=must"):
        normalize_resume("sometimes")
    assert changed_fields({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 2, "c": (1, 2)}, "d": 3}) == [
        ("a.b", 1, 2), ("d", None, 3)]


def test_disk_usage_is_reported(tmp_path):
    from qwenkit.core.report import Report, format_bytes

    run = _checkpointed_run(tmp_path / "r")
    usage = run.disk_usage_bytes()
    assert 0 < usage["checkpoints"] < usage["total"]
    report = Report("r").disk_usage(run)
    assert format_bytes(usage["total"]) in report.blocks[-1].payload
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(12) == "12 B"
