import json

import pytest
import yaml
from roleplay_fixtures import base_config

from qwenkit.cli import run_cli


def invoke(capsys, *args):
    """``qwenkit roleplay ARGS...`` in process: (exit code, everything printed)."""
    code = run_cli(["roleplay", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def write_config(tmp_path, data):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"concurrency": "many"}, "concurrency"),
        ({"colour": 1}, "colour: unknown field"),
        ({"players": {"a": {"kind": "gpt"}}}, "players.a"),
        ({"players": {"a": {"kind": "rules"}}}, "players.a: kind 'rules' is a judge"),
        ({"judges": {"j": {"kind": "openai", "model": "m"}}}, "base_url"),
        ({"data": "nowhere.yaml"}, "nowhere.yaml: no such file"),
        ({"select": {"ids": ["nope"]}}, "no dialogue"),
        ({"simulator": None}, "simulator: dialogues"),
        ({"players": {"a": {"kind": "transformers", "model": "/no/such/model"}}}, "/no/such/model"),
    ],
)
def test_bad_run_configs_exit_2_naming_the_field(small_dataset, tmp_path, change, pattern, capsys):
    config = write_config(tmp_path, {**base_config(small_dataset), **change})
    code, output = invoke(capsys, "run", "--config", str(config), "--out", str(tmp_path / "out"))
    assert code == 2, output
    assert pattern in output and "Traceback" not in output


def test_bad_yaml_missing_config_and_bad_set(small_dataset, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("players: [\n", encoding="utf-8")
    for args, pattern in [(["--config", str(bad)], "not valid YAML"),
                          (["--config", str(tmp_path / "none.yaml")], "does not exist"),
                          ([], "--config is required"),
                          (["--config", str(write_config(tmp_path, base_config(small_dataset))), "--set", "seed"],
                           "dotted.key=value")]:
        code, output = invoke(capsys, "run", *args, "--out", str(tmp_path / "o"))
        assert code == 2 and pattern in output and "Traceback" not in output, output


def test_bad_data_file_names_record_and_field(tmp_path, capsys):
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"format": "qwenkit-roleplay", "version": 1, "characters": [
        {"id": "x", "kind": "custom", "lang": "fr", "traits": ["a"], "background": "b"}]}), encoding="utf-8")
    code, output = invoke(capsys, "data", "validate", str(path))
    assert code == 2 and "characters[0] (id 'x'): field 'lang'" in output and "Traceback" not in output
    code, output = invoke(capsys, "data", "validate", str(tmp_path / "missing"))
    assert code == 2 and "no such file" in output


def test_bad_label_files_and_report_dirs(tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("item,dimension,rater\n1,EE,a\n", encoding="utf-8")
    code, output = invoke(capsys, "agreement", str(labels))
    assert code == 2 and "lacks columns ['score']" in output
    labels.write_text("item,dimension,rater,score\n1,EE,a,high\n", encoding="utf-8")
    code, output = invoke(capsys, "agreement", str(labels))
    assert code == 2 and "line 2: field 'score' must be a number" in output
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text(json.dumps({"item": 1, "dimension": "EE", "rater": "judge", "score": 3}) + "\n{oops\n")
    code, output = invoke(capsys, "agreement", str(jsonl))
    assert code == 2 and "line 2: not valid JSON" in output
    code, output = invoke(capsys, "report", str(tmp_path))
    assert code == 2 and "no judgments.jsonl" in output and "Traceback" not in output


def test_run_cli_resume_flags(small_dataset, tmp_path, capsys):
    from qwenkit.cli import run_cli

    config = str(write_config(tmp_path, base_config(small_dataset)))
    out = str(tmp_path / "out")
    assert run_cli(["roleplay", "run", "--config", config, "--out", out, "--quiet"]) == 0
    assert run_cli(["roleplay", "run", "--config", config, "--out", out, "--quiet"]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert run_cli(["roleplay", "run", "--config", config, "--out", out, "--quiet", "--resume"]) == 0
    code = run_cli(["roleplay", "run", "--config", config, "--out", str(tmp_path / "new"), "--resume=must"])
    captured = capsys.readouterr()
    assert code == 2 and "--resume=must" in captured.err and "Traceback" not in captured.err + captured.out
