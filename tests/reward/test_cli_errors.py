from pathlib import Path

import pytest

from cli_checks import assert_clean_cli_error as _fails
from qwenkit.cli import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "Posts.xml"


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_train_bad_inputs(tmp_path, capsys):
    _fails(capsys, ["reward", "train", "--config", str(_write(tmp_path / "a.yaml", "model: [1, 2"))],
           "not valid YAML")
    _fails(capsys, ["reward", "train", "--config", str(_write(tmp_path / "b.yaml", "batch_sise: 4\n"))],
           "batch_sise", "unknown field")
    _fails(capsys, ["reward", "train", "--config", str(_write(tmp_path / "c.yaml", "batch_size: many\n"))],
           "batch_size")
    _fails(capsys, ["reward", "train", "--config", str(tmp_path / "missing.yaml")], "missing.yaml", "does not exist")
    _fails(capsys, ["reward", "train", "--config", str(_write(tmp_path / "d.yaml", "data: {train: nope.jsonl}\n"))],
           "nope.jsonl", "does not exist")
    bad = _write(tmp_path / "bad.jsonl", '{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q"}\n')
    _fails(capsys, ["reward", "train", "--config", str(_write(tmp_path / "e.yaml", f"data: {{train: {bad}}}\n"))],
           "bad.jsonl:2", "'chosen'")
    _fails(capsys, ["reward", "train", "--set", f"model.path={tmp_path / 'no-model'}"], "no-model")
    both = _write(tmp_path / "f.yaml", "data: {train: x.jsonl, synthetic: {}}\n")
    _fails(capsys, ["reward", "train", "--config", str(both)], "data", "not both")


def test_eval_bad_inputs(tmp_path, capsys):
    _fails(capsys, ["reward", "eval", "--model", str(tmp_path / "none"), "--data", str(tmp_path / "t.jsonl")],
           "does not exist")
    pairs = _write(tmp_path / "t.jsonl", '{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    _fails(capsys, ["reward", "eval", "--model", str(tmp_path), "--data", str(pairs)], "config.json")
    _fails(capsys, ["reward", "eval", "--model", str(tmp_path), "--data", str(pairs), "--reward-bench"],
           "t.jsonl:1", "'subset'")


def test_data_and_scaling_bad_inputs(tmp_path, capsys):
    _fails(capsys, ["reward", "data", "stackexchange", "--posts", str(tmp_path / "Posts.xml")], "does not exist")
    broken = _write(tmp_path / "Posts.xml", "<posts><row Id='1'\n</posts>")
    _fails(capsys, ["reward", "data", "stackexchange", "--posts", str(broken)], "Posts.xml:2", "not well-formed")
    grid = _write(tmp_path / "grid.yaml", "data_sizes: [4]\n")
    _fails(capsys, ["reward", "scaling", "--config", str(grid), "--list"], "data_sizes")
    ok = _write(tmp_path / "ok.yaml", "model_sizes: [nano]\ndata_sizes: [16]\n")
    _fails(capsys, ["reward", "scaling", "--config", str(ok), "--cell", "5", "--out", str(tmp_path / "o")],
           "cell 5 does not exist")


@pytest.mark.parametrize("verb", ["train", "eval", "scaling", "data"])
def test_help_works(verb, capsys):
    assert run_cli(["reward", verb, "--help"]) == 0
