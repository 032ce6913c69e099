"""The image commands' error path: bad inputs exit 2 with a message naming the field or file, no traceback."""

import json
from pathlib import Path

from cli_checks import assert_clean_cli_error as _clean_error

FIXTURES = Path(__file__).parent / "fixtures"


def test_train_and_synth_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("width: 32\nwidht: 16\n")
    _clean_error(capsys, ["image", "train", "--config", str(bad), "--out", str(tmp_path / "r")], "widht")
    _clean_error(capsys, ["image", "train", "--set", "width=38", "--out", str(tmp_path / "r")], "multiples")
    _clean_error(capsys, ["image", "train", "--config", str(tmp_path / "none.yaml")], "none.yaml")
    _clean_error(capsys, ["image", "synth", "--set", "count=many", "--out", str(tmp_path / "s")], "count")


def test_finetune_errors_name_the_input(tmp_path, capsys):
    _clean_error(capsys, ["image", "finetune", "--model", str(tmp_path / "nope"), "--data", str(tmp_path)],
                 "nope", "not a folder")
    model = tmp_path / "model"
    model.mkdir()
    _clean_error(capsys, ["image", "finetune", "--model", str(model), "--data", str(tmp_path)], "qwenkit_image.json")
    _clean_error(capsys, ["image", "finetune", "--model", str(model), "--data", str(tmp_path), "--set",
                          "lora.rank=0"], "lora.rank")


def test_caption_folder_errors(tmp_path):
    import pytest

    from qwenkit.core.errors import DataError
    from qwenkit.image.finetune import CaptionFolder

    kwargs = {"height": 8, "width": 8, "batch_size": 1, "seed": 0}
    with pytest.raises(DataError, match="no manifest.json, no captions.jsonl and no images"):
        CaptionFolder(tmp_path, **kwargs)
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="a.png"):
        CaptionFolder(tmp_path, **kwargs)
    (tmp_path / "captions.jsonl").write_text(json.dumps({"file": "a.png", "caption": "x"}) + "\n{\"file\": 3}\n")
    with pytest.raises(DataError, match="captions.jsonl: line 2 lacks the string field 'file'"):
        CaptionFolder(tmp_path, **kwargs)
    (tmp_path / "captions.jsonl").write_text(json.dumps({"file": "b.png", "caption": "x"}) + "\n")
    with pytest.raises(DataError, match="missing, e.g."):
        CaptionFolder(tmp_path, **kwargs)


def test_generate_edit_bench_errors(tmp_path, capsys):
    _clean_error(capsys, ["image", "generate", "--model", str(tmp_path / "m"), "--prompt", "x"], "not a folder")
    _clean_error(capsys, ["image", "edit", "--model", str(tmp_path), "--image", str(tmp_path / "x.png"),
                          "--instruction", "y"], "x.png")
    _clean_error(capsys, ["image", "bench-text", "--benchmark", "cvtg-2k", "--prompts", str(tmp_path / "p"),
                          "--images", str(tmp_path)], "does not exist")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{\"prompt\": \"p\"}\n")
    _clean_error(capsys, ["image", "bench-text", "--benchmark", "longtext-bench", "--prompts", str(bad),
                          "--images", str(tmp_path)], "bad.jsonl", "record 1", "text")
