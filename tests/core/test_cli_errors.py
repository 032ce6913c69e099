"""The one error path: user errors exit 2 with a short message and no traceback; nothing is written first."""

import pytest

from cli_checks import assert_clean_cli_error as _clean_error
from qwenkit.cli import run_cli

TINY_RL = ["--set", "model.size=nano", "--set", "rollouts=1", "--set", "rollout.prompts=2", "--set",
           "rollout.group_size=2", "--set", "rollout.num_mini_batches=1", "--set", "eval_prompts=0", "--set",
           "rollout.max_new_tokens=4", "-q", "--threads", "1"]


@pytest.fixture
def bad_files(tmp_path):
    files = {
        "syntax": "trainer: {lr: 1e-3\nrollouts: [",
        "unknown": "rollouts: 2\nrolouts: 3\n",
        "wrong_type": "trainer: {max_steps_x: 1}\nrollout: {group_size: many}\n",
        "not_mapping": "- a\n- b\n",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(text)
    return paths


def test_config_errors_name_the_field(tmp_path, capsys, bad_files):
    out = tmp_path / "run"
    _clean_error(capsys, ["rl", "train", "--config", str(tmp_path / "missing.yaml"), "--out", str(out)],
                 "missing.yaml", "does not exist")
    _clean_error(capsys, ["rl", "train", "--config", str(bad_files["syntax"]), "--out", str(out)], "line")
    _clean_error(capsys, ["rl", "train", "--config", str(bad_files["unknown"]), "--out", str(out)],
                 "rolouts", "unknown field")
    _clean_error(capsys, ["rl", "train", "--config", str(bad_files["wrong_type"]), "--out", str(out)],
                 "rollout.group_size", "many")
    _clean_error(capsys, ["rl", "train", "--config", str(bad_files["not_mapping"]), "--out", str(out)], "mapping")
    _clean_error(capsys, ["rl", "train", "--set", "trainer.lr=-1", "--out", str(out)], "trainer.lr")
    _clean_error(capsys, ["rl", "train", "--set", "novalue", "--out", str(out)], "dotted.key=value")
    _clean_error(capsys, ["rl", "train", "--set", "task=sort99", *TINY_RL, "--out", str(out)], "sort99")
    assert not (out / "config.yaml").exists(), "nothing is written before the config and inputs are valid"


def test_bad_arguments_exit_2(tmp_path, capsys):
    _clean_error(capsys, ["rl", "train", "--algorithm", "ppo9", "--out", str(tmp_path)], "ppo9")
    _clean_error(capsys, ["rl", "train", "--no-such-flag"], "no-such-flag")
    _clean_error(capsys, ["repro", "no-such-repro"], "no-such-repro")
    _clean_error(capsys, ["demo", "--only", "no-such-repro", "--out", str(tmp_path)], "no-such-repro")
    _clean_error(capsys, ["rl", "train", "--resume=sometimes", *TINY_RL, "--out", str(tmp_path / "r")],
                 "sometimes")


def test_model_path_errors_say_what_was_found(tmp_path, capsys):
    out = tmp_path / "run"
    _clean_error(capsys, ["rl", "train", "--set", f"model.path={tmp_path / 'nope'}", "--out", str(out)],
                 "neither an existing path nor one of the aliases")
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "readme.txt").write_text("hi")
    _clean_error(capsys, ["rl", "train", "--set", f"model.path={tmp_path / 'notamodel'}", "--out", str(out)],
                 "not a model directory", "readme.txt", "config.json")
    (tmp_path / "weights.bin").write_bytes(b"x")
    _clean_error(capsys, ["rl", "train", "--set", f"model.path={tmp_path / 'weights.bin'}", "--out", str(out)],
                 "not a .gguf file")
    assert not (out / "config.yaml").exists()


def test_resume_refusals_and_the_debug_traceback(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _clean_error(capsys, ["rl", "train", *TINY_RL, "--out", str(out), "--resume=must"], "no checkpoint")
    assert run_cli(["rl", "train", *TINY_RL, "--out", str(out)]) == 0
    capsys.readouterr()
    _clean_error(capsys, ["rl", "train", *TINY_RL, "--out", str(out)], "already holds a run", "--resume")
    _clean_error(capsys, ["rl", "train", *TINY_RL, "--set", "rollout.group_size=4", "--out", str(out), "--resume"],
                 "rollout.group_size: 2 -> 4")
    weights = next((out / "checkpoints").glob("step-*")) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    _clean_error(capsys, ["rl", "train", *TINY_RL, "--out", str(out), "--resume"], "truncated")
    rc = run_cli(["--debug", "rl", "train", *TINY_RL, "--out", str(out), "--resume"])
    captured = capsys.readouterr()
    assert rc == 2 and "Traceback" in captured.err and "CheckpointError" in captured.err
    monkeypatch.setenv("QWENKIT_DEBUG", "1")
    assert run_cli(["rl", "train", *TINY_RL, "--out", str(out), "--resume"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_and_exit_1(capsys, monkeypatch):
    import qwenkit.cli as cli

    def explode(*args, **kwargs):
        raise ZeroDivisionError("a genuine bug")

    monkeypatch.setattr(cli, "app", explode)
    assert run_cli(["doctor"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "bug in qwenkit" in err
