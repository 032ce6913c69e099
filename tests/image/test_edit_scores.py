"""Edit metrics named for what they measure: instruction followed vs text kept vs consistency, per edit kind."""

import numpy as np
import pytest

from qwenkit.image.data import make_edit_pair
from qwenkit.image.evaluate import EDIT_METRICS, score_edit_pair
from qwenkit.image.experiments import EDIT_COLORS, describe_edit_grid
from qwenkit.image.render import COLORS


def _pair(kind: str, index: int = 1):
    return make_edit_pair(0, index, width=32, height=32, kinds=(kind,), bg="white", font="DejaVuSans-Bold",
                          colors=EDIT_COLORS, texture="plain")


def test_pairs_use_the_fixed_background_font_and_palette():
    for index in range(12):
        pair = _pair("color", index)
        source, target = pair.source.spec, pair.target.spec
        assert source.bg == target.bg == "white" and source.font.endswith("DejaVuSans-Bold.ttf")
        assert source.fg in EDIT_COLORS and target.fg in EDIT_COLORS and source.fg != target.fg
        assert pair.instruction == f"make text {target.fg}"
    with pytest.raises(ValueError, match="fewer than 2"):
        make_edit_pair(0, 1, width=16, height=16, kinds=("color",), bg="white", colors=["white", "red"])


def test_colour_edit_scores_tell_the_edit_from_a_copy_of_the_source():
    pair = _pair("color")
    text = pair.source.text
    done = score_edit_pair(pair, pair.target.image(), text)
    copied = score_edit_pair(pair, pair.source.image(), text)
    assert done["colour_applied"] == 1.0 and copied["colour_applied"] == 0.0
    assert done["glyph_colour_error"] < 40 < copied["glyph_colour_error"]
    distance = np.linalg.norm(np.subtract(COLORS[pair.source.spec.fg], COLORS[pair.target.spec.fg]))
    assert copied["glyph_colour_error"] == pytest.approx(distance, rel=0.25)  # the core pixels keep the old colour
    assert done["psnr_to_target"] == 99.0 and copied["psnr_outside_edit"] == 99.0  # both consistent outside
    assert done["text_kept_ocr"] == copied["text_kept_ocr"] == 1.0  # text kept says nothing about the edit
    assert score_edit_pair(pair, pair.target.image(), "?")["text_kept_ocr"] == 0.0
    assert "new_text_ocr" not in done and "moved_as_told" not in done
    pink = np.array(pair.target.image(), dtype=float)  # the instructed colour blended half-way with the white
    mask = pink.sum(-1) < 600
    pink[mask] = (pink[mask] + 245) / 2
    if pair.target.spec.fg == "red":  # a washed-out red is nearest gray among all colours, red among the palette
        assert score_edit_pair(pair, pink.astype(np.uint8), text)["colour_applied"] == 0.0
    assert score_edit_pair(pair, pink.astype(np.uint8), text, palette=EDIT_COLORS)["colour_applied"] == 1.0


def test_word_and_position_edits_are_judged_by_their_own_instruction():
    word = _pair("word")
    assert score_edit_pair(word, word.target.image(), word.expected_text)["new_text_ocr"] == 1.0
    assert score_edit_pair(word, word.source.image(), word.source.text)["new_text_ocr"] == 0.0
    position = next(p for p in (_pair("position", i) for i in range(20))
                    if abs(p.target.spec.offset[0] - p.source.spec.offset[0]) > 0.5)
    moved = score_edit_pair(position, position.target.image(), position.source.text)
    stayed = score_edit_pair(position, position.source.image(), position.source.text)
    assert moved["moved_as_told"] == 1.0 and stayed["moved_as_told"] == 0.0
    assert stayed["text_kept_ocr"] == 1.0 and set(EDIT_METRICS) >= set(moved) - {"kind", "read"}


def test_grid_description_says_when_an_arm_shows_no_edit():
    no_edit = {"by_kind": {"color": {"n": 4, "colour_applied": 0.0, "text_kept_ocr": 1.0}}}
    shown = [{"kind": "color", "colour_applied": 0.0, "text_kept_ocr": 1.0}] * 2
    failed = {"conditioning": "semantic", "steps": 10, "shown_pairs": shown,
              "by_kind": {"color": {"n": 4, "colour_applied": 0.02, "text_kept_ocr": 0.5}}}
    text = describe_edit_grid(failed, no_edit)
    assert "shows no color edit" in text and "0 of the 2 shown" in text
    worked = failed | {"shown_pairs": [{"kind": "color", "colour_applied": 1.0, "text_kept_ocr": 1.0}] * 2,
                       "by_kind": {"color": {"n": 4, "colour_applied": 0.9, "text_kept_ocr": 0.8}}}
    text = describe_edit_grid(worked, no_edit)
    assert "no color edit" not in text and "applied in 2 of the 2 shown (0.90 of 4" in text


def test_grid_description_says_when_the_colour_is_only_approximate():
    ground_truth = {"by_kind": {"color": {"glyph_colour_error": 12.0}}}
    shown = [{"kind": "color", "colour_applied": 1.0, "text_kept_ocr": 1.0}] * 2

    def arm(error):
        return {"conditioning": "dual", "steps": 10, "shown_pairs": shown,
                "by_kind": {"color": {"n": 4, "colour_applied": 1.0, "glyph_colour_error": error}}}

    muddy = describe_edit_grid(arm(87.0), None, ground_truth)
    assert "87 of 441 (rendered ground truth 12)" in muddy and "only approximately" in muddy
    assert "only approximately" not in describe_edit_grid(arm(20.0), None, ground_truth)
