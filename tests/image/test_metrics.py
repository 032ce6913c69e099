import numpy as np
import pytest

from qwenkit.image.metrics import (
    char_accuracy,
    edit_consistency,
    edit_distance,
    edit_region_mask,
    glyph_colour_error,
    glyph_mask,
    ink_centroid_x,
    ink_fraction,
    masked_mse,
    masked_psnr,
    nearest_colour,
    ned,
    normalize_text,
    word_match,
)


def _reference_levenshtein(a: str, b: str) -> int:
    # full-matrix textbook recursion, independent of the two-row implementation
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("", "", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3), ("通义千问", "通义干问", 1), ("ab", "ba", 2),
])
def test_edit_distance_hand_values(a, b, expected):
    assert edit_distance(a, b) == expected == _reference_levenshtein(a, b)


def test_edit_distance_matches_reference_on_random_strings():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = "".join(rng.choice(list("abc文字"), rng.integers(0, 8)))
        b = "".join(rng.choice(list("abc文字"), rng.integers(0, 8)))
        assert edit_distance(a, b) == _reference_levenshtein(a, b)


def test_normalisation_ignores_case_spaces_and_width():
    assert normalize_text(" Hello  World\n") == "helloworld"
    assert normalize_text("ＱＷＥＮ") == "qwen"  # full-width forms (NFKC)
    assert word_match("HelloWorld", "hello world")
    assert not word_match("Hel1o", "hello")


def test_ned_values():
    assert ned("", "") == 1.0
    assert ned("abc", "") == 0.0
    assert ned("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert ned("通义 千问", "通义千问") == 1.0
    assert char_accuracy("通义", "通义千问") == pytest.approx(0.5)
    assert char_accuracy("xyzxyzxyz", "ab") == 0.0


def test_masked_psnr_by_hand():
    a = np.zeros((2, 2, 3))
    b = a.copy()
    b[0, 0] = 10.0  # only pixel (0, 0) differs
    mask = np.array([[True, True], [False, False]])
    assert masked_mse(a, b, mask) == pytest.approx(100.0 / 2)
    assert masked_psnr(a, b, mask) == pytest.approx(10 * np.log10(255**2 / 50.0))
    assert masked_psnr(a, b, ~mask) == float("inf")
    with pytest.raises(ValueError, match="no pixel"):
        masked_mse(a, b, np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="shapes differ"):
        masked_mse(a, np.zeros((3, 2, 3)), mask)


def test_edit_consistency_separates_inside_from_outside():
    source = np.full((8, 8, 3), 200.0)
    target = source.copy()
    target[2:4, 2:4] = 0.0  # the intended edit
    region = edit_region_mask(source, target, dilate=0)
    assert region.sum() == 4 and region[2:4, 2:4].all()
    grown = edit_region_mask(source, target, dilate=1)
    assert grown.sum() == 16
    faithful = edit_consistency(source, target, region)
    assert faithful["outside_psnr"] == float("inf") and faithful["outside_changed"] == 0.0
    assert faithful["inside_change"] == pytest.approx(200.0)
    leaky = target.copy()
    leaky[6, 6] = 100.0  # one outside pixel changed
    scores = edit_consistency(source, leaky, region)
    assert scores["outside_changed"] == pytest.approx(1 / 60)
    assert scores["outside_mse"] == pytest.approx(100.0**2 / 60)


def test_ink_fraction_and_glyph_mask_by_hand():
    bg, fg = (255, 255, 255), (255, 0, 0)  # red text on white: the axis is (0, -255, -255)
    image = np.array([[bg, fg], [(255, 127.5, 127.5), (255, 63.75, 63.75)]], dtype=float)
    assert ink_fraction(image, fg, bg) == pytest.approx(np.array([[0.0, 1.0], [0.5, 0.75]]))
    assert glyph_mask(image, fg, bg).tolist() == [[False, True], [False, True]]
    with pytest.raises(ValueError, match="equals the background"):
        ink_fraction(image, bg, bg)


def test_glyph_colour_error_and_nearest_colour_by_hand():
    edited = np.zeros((2, 2, 3))
    edited[0, 0] = (3, 4, 0)  # distance 5 from black
    edited[0, 1] = (0, 0, 12)  # distance 12
    edited[1] = 200.0  # outside the mask: ignored
    mask = np.array([[True, True], [False, False]])
    assert glyph_colour_error(edited, mask, (0, 0, 0)) == pytest.approx((5 + 12) / 2)
    with pytest.raises(ValueError, match="empty"):
        glyph_colour_error(edited, np.zeros((2, 2), bool), (0, 0, 0))
    palette = {"black": (20, 20, 20), "red": (200, 30, 30), "white": (245, 245, 245)}
    assert nearest_colour((180, 60, 50), palette) == "red" and nearest_colour((90, 90, 90), palette) == "black"


def test_ink_centroid_by_hand():
    image = np.full((4, 6, 3), 255.0)
    assert ink_centroid_x(image, (255, 255, 255)) is None
    image[1, 1] = image[2, 3] = 0.0
    assert ink_centroid_x(image, (255, 255, 255)) == pytest.approx(2.0)
