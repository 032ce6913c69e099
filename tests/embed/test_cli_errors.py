"""qwenkit embed on bad input: exit 2, the file or field named, no traceback."""

import pytest

from qwenkit.cli import run_cli


@pytest.fixture
def bad_configs(tmp_path):
    wrong_type = tmp_path / "wrong_type.yaml"
    wrong_type.write_text("kind: embedder\ntrainer: {max_steps: many}\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("bogus_key: 1\n")
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("trainer: {lr: [\n")
    return {"wrong_type": wrong_type, "unknown": unknown, "syntax": syntax}


def test_bad_input_exits_2_without_traceback(tmp_path, capsys, bad_configs):
    cases = [
        (["data", "nope"], "nope"),
        (["train", "--config", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (["train", "--config", str(bad_configs["wrong_type"])], "trainer.max_steps"),
        (["train", "--config", str(bad_configs["unknown"])], "bogus_key"),
        (["train", "--config", str(bad_configs["syntax"])], "line"),
        (["merge", str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "a")),
        (["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--t", "2"], "--t"),
        (["eval", str(tmp_path / "nomodel"), "--task", "stdlib"], "nomodel"),
        (["eval", "minilm", "--dims", "a,b", "--task", "stdlib"], "--dims"),
        (["serve", str(tmp_path / "nomodel")], "nomodel"),
    ]
    for argv, needle in cases:
        assert run_cli(["embed", *argv]) == 2, argv
        captured = capsys.readouterr()
        text = captured.out + captured.err
        assert needle in text and "Traceback" not in text, (argv, text)
    assert not (tmp_path / "runs").exists()
