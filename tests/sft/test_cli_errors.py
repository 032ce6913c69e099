"""Bad input to `qwenkit sft ...`: exit code 2, a message naming the field or file, no traceback."""

import json

import pytest

from cli_checks import assert_clean_cli_error as _fails


def _data(tmp_path, rows):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) if isinstance(r, dict) else r for r in rows) + "\n")
    return path


def test_bad_yaml(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("data: [unclosed\n")
    _fails(capsys, ["sft", "train", "--config", str(config), "--out", str(tmp_path / "r")], "not valid YAML", "c.yaml")


def test_unknown_key_and_wrong_type(tmp_path, capsys):
    _fails(capsys, ["sft", "train", "--set", "trainer.lrr=1", "--out", str(tmp_path / "r")], "trainer.lrr",
           "unknown field")
    _fails(capsys, ["sft", "train", "--set", "batch_size=many", "--out", str(tmp_path / "r")], "batch_size")
    _fails(capsys, ["sft", "train", "--set", "target=both", "--out", str(tmp_path / "r")], "target")


def test_missing_data_file(tmp_path, capsys):
    _fails(capsys, ["sft", "train", "--set", "data.task=null", "--set", f"data.train={tmp_path / 'none.jsonl'}",
                    "--out", str(tmp_path / "r")], "none.jsonl", "does not exist")


def test_bad_data_line_names_file_line_and_field(tmp_path, capsys):
    path = _data(tmp_path, [{"question": "q", "answer": 1}, {"question": "q2"}])
    _fails(capsys, ["sft", "train", "--set", "data.task=null", "--set", f"data.train={path}", "--set",
                    "target=answer", "--out", str(tmp_path / "r")], "data.jsonl line 2", "'answer' is missing")


def test_rationale_target_without_rationales(tmp_path, capsys):
    path = _data(tmp_path, [{"question": "q", "answer": 1}])
    _fails(capsys, ["sft", "train", "--set", "data.task=null", "--set", f"data.train={path}", "--out",
                    str(tmp_path / "r")], "no rationale", "qwenkit sft rationales")


def test_missing_model_path(tmp_path, capsys):
    _fails(capsys, ["sft", "train", "--set", f"model.path={tmp_path / 'no-model'}", "--out", str(tmp_path / "r")],
           "no-model")
    assert not (tmp_path / "r" / "config.yaml").exists()  # nothing is written before the inputs are valid


@pytest.mark.parametrize("verb", ["evaluate", "rationales"])
def test_evaluate_and_rationales_bad_inputs(tmp_path, capsys, verb):
    argv = ["sft", verb, "--data", str(tmp_path / "missing.jsonl"), "--model", str(tmp_path / "m")]
    if verb == "rationales":
        argv += ["--out", str(tmp_path / "out.jsonl")]
    _fails(capsys, argv, "missing.jsonl")


def test_rationales_needs_a_model(tmp_path, capsys):
    path = _data(tmp_path, [{"question": "q", "answer": 1}])
    _fails(capsys, ["sft", "rationales", "--data", str(path), "--out", str(tmp_path / "o.jsonl")], "--model")
