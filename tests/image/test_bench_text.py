"""``qwenkit image bench-text --images``: real OCR of rendered ChineseWord characters, scored per level."""

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

from qwenkit.image.cli import app
from qwenkit.image.render import available_fonts

FIXTURES = Path(__file__).parent / "fixtures"


def test_bench_text_scores_rendered_characters_per_level(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime")
    fonts = available_fonts()["cjk"]
    if not fonts:
        pytest.skip("no CJK font (apt-get install fonts-wqy-zenhei)")
    font = ImageFont.truetype(fonts[0], 44)
    # level1: 通, 义 drawn; level2: the simplified 临 drawn for the traditional 臨; level3: a blank card
    drawn = {"level1-1": "通", "level1-2": "义", "level2-1": "临", "level3-1": ""}
    images = tmp_path / "images"
    images.mkdir()
    for name, char in drawn.items():
        card = Image.new("RGB", (64, 64), "white")
        ImageDraw.Draw(card).text((10, 6), char, fill="black", font=font)
        card.save(images / f"{name}.png")
    args = ["bench-text", "--benchmark", "chineseword", "--prompts", str(FIXTURES / "chineseword"),
            "--images", str(images), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    groups = json.loads((tmp_path / "out" / "scores.json").read_text())["groups"]
    assert {g: s["char_accuracy"] for g, s in groups.items()} == {"level1": 1.0, "level2": 1.0, "level3": 0.0}
    strict = CliRunner().invoke(app, args[:-1] + [str(tmp_path / "strict"), "--no-simplify"])
    assert strict.exit_code == 0, strict.output
    groups = json.loads((tmp_path / "strict" / "scores.json").read_text())["groups"]
    assert groups["level2"]["char_accuracy"] == 0.0


def _flat(output: str) -> str:
    """The CLI's error box, one line (rich wraps long messages inside a box)."""
    return " ".join(output.replace("│", " ").split())


def test_bench_text_bad_inputs(tmp_path):
    runner = CliRunner()
    base = ["bench-text", "--prompts", str(FIXTURES / "cvtg"), "--images", str(tmp_path)]
    result = runner.invoke(app, base + ["--benchmark", "geneval"])
    assert result.exit_code == 2 and "unknown benchmark" in _flat(result.output)
    result = runner.invoke(app, base + ["--benchmark", "cvtg-2k"])
    assert result.exit_code == 2 and "CVTG_2-0.png" in _flat(result.output)
    result = runner.invoke(app, ["bench-text", "--benchmark", "cvtg-2k", "--prompts", str(tmp_path / "none"),
                                 "--images", str(tmp_path)])
    assert result.exit_code == 2 and "does not exist" in _flat(result.output)
