"""Pure metrics of text rendering and editing (no OCR here; see :mod:`qwenkit.image.ocr` for the readers).

The synthetic evaluation scores one rendered string per image: *exact match* of the whole string and *NED* (normalised
edit distance, a similarity in [0, 1]). The benchmarks' own metrics (CVTG-2K per-word accuracy, LongText-Bench and
ChineseWord character recall) live in :mod:`qwenkit.image.text_metrics`.
Editing is scored by *consistency* outside the edited region (how much the edit leaked) against *success* inside it.
"""

from __future__ import annotations

import unicodedata

import numpy as np


def normalize_text(text: str) -> str:
    """NFKC, case-folded, with all whitespace removed.

    OCR engines drop or insert spaces (RapidOCR reads "Hello World" as "HelloWorld"; tesseract spaces out CJK
    characters), so spacing is not scored; case is not scored either (the targets mix upper and lower case).
    """
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest single-character insertions, deletions and substitutions turning a into b.

    Dynamic programme ``D[i][j] = min(D[i-1][j] + 1, D[i][j-1] + 1, D[i-1][j-1] + [a_i != b_j])``.
    """
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def ned(prediction: str, target: str, *, normalize: bool = True) -> float:
    """Normalised edit-distance similarity ``1 - lev(p, t) / max(|p|, |t|)`` in [0, 1]; 1 when both are empty."""
    if normalize:
        prediction, target = normalize_text(prediction), normalize_text(target)
    longest = max(len(prediction), len(target))
    return 1.0 if longest == 0 else 1.0 - edit_distance(prediction, target) / longest


def word_match(prediction: str, target: str, *, normalize: bool = True) -> bool:
    """Whole-string exact match after :func:`normalize_text` (ours; CVTG-2K scores per word:
    :func:`qwenkit.image.text_metrics.cvtg_word_accuracy`)."""
    if normalize:
        prediction, target = normalize_text(prediction), normalize_text(target)
    return prediction == target


def char_accuracy(prediction: str, target: str) -> float:
    """Fraction of target characters recovered in order: ``(|t| - lev(p, t)) / |t|`` clipped at 0 (ours; the
    benchmarks' order-free recall is :func:`qwenkit.image.text_metrics.bag_recall`)."""
    prediction, target = normalize_text(prediction), normalize_text(target)
    if not target:
        return 1.0 if not prediction else 0.0
    return max(0.0, (len(target) - edit_distance(prediction, target)) / len(target))


def _as_float_array(image) -> np.ndarray:
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        array = array[..., None]
    return array


def masked_mse(a, b, mask) -> float:
    """Mean squared error over the pixels where ``mask`` is true: ``sum_m (a - b)^2 / (|m| * C)`` (values 0..255).

    ``a`` and ``b`` are H x W (x C) images (PIL or arrays), ``mask`` an H x W boolean array. An empty mask raises:
    there is nothing to compare.
    """
    a, b = _as_float_array(a), _as_float_array(b)
    mask = np.asarray(mask, dtype=bool)
    if a.shape != b.shape or a.shape[:2] != mask.shape:
        raise ValueError(f"shapes differ: a {a.shape}, b {b.shape}, mask {mask.shape}; resize to one size first")
    if not mask.any():
        raise ValueError("the mask selects no pixel; an edit region covering the whole image leaves nothing to score")
    return float(((a - b) ** 2)[mask].mean())


def masked_psnr(a, b, mask, *, peak: float = 255.0) -> float:
    """PSNR over the masked pixels: ``10 log10(peak^2 / MSE_mask)``; ``inf`` when they are identical there."""
    mse = masked_mse(a, b, mask)
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak**2 / mse))


def edit_region_mask(source, target, *, threshold: float = 24.0, dilate: int = 1) -> np.ndarray:
    """The pixels an edit is meant to change: where ``source`` and the reference ``target`` differ by more than
    ``threshold`` (max over channels, 0..255), grown by ``dilate`` pixels (a square structuring element)."""
    diff = np.abs(_as_float_array(source) - _as_float_array(target)).max(axis=-1) > threshold
    if dilate > 0:
        padded = np.pad(diff, dilate)
        grown = np.zeros_like(diff)
        h, w = diff.shape
        for dy in range(2 * dilate + 1):
            for dx in range(2 * dilate + 1):
                grown |= padded[dy : dy + h, dx : dx + w]
        diff = grown
    return diff


def edit_consistency(source, edited, region) -> dict[str, float]:
    """How much an edit changed *outside* its region ``region`` (H x W bool, True = meant to change).

    Returns ``outside_psnr`` (PSNR between source and edited on ~region; higher = more faithful), ``outside_mse``,
    ``outside_changed`` (fraction of outside pixels whose max-channel change exceeds 24/255) and ``inside_change``
    (mean absolute change inside the region, 0..255; an edit that did nothing has 0 here).
    """
    region = np.asarray(region, dtype=bool)
    outside = ~region
    a, b = _as_float_array(source), _as_float_array(edited)
    changed = np.abs(a - b).max(axis=-1) > 24.0
    result = {
        "outside_psnr": masked_psnr(source, edited, outside),
        "outside_mse": masked_mse(source, edited, outside),
        "outside_changed": float(changed[outside].mean()),
    }
    result["inside_change"] = float(np.abs(a - b)[region].mean()) if region.any() else 0.0
    return result


def ink_fraction(image, fg, bg) -> np.ndarray:
    """How far each pixel lies from the background colour towards the text colour: the projection
    ``alpha = <p - bg, fg - bg> / |fg - bg|^2`` (H x W; 0 = background, 1 = text colour; ours). ``fg``/``bg`` are RGB
    triples 0..255. On a render of text in ``fg`` over a plain ``bg`` this is the glyph's anti-aliased coverage."""
    pixels = _as_float_array(image)
    fg, bg = np.asarray(fg, dtype=np.float64), np.asarray(bg, dtype=np.float64)
    axis = fg - bg
    if not axis.any():
        raise ValueError(f"text colour {fg.tolist()} equals the background colour; no glyph can be told apart")
    return ((pixels - bg) @ axis) / float(axis @ axis)


def glyph_mask(image, fg, bg, *, level: float = 0.75) -> np.ndarray:
    """The glyph's core pixels in a render of text in ``fg`` over a plain ``bg``: ``ink_fraction >= level`` (the
    default keeps the stroke interior and drops the anti-aliased rim, whose colour is a blend)."""
    return ink_fraction(image, fg, bg) >= level


def glyph_colour_error(edited, mask, colour) -> float:
    """Colour error inside the glyph mask: the mean Euclidean RGB distance ``mean_m |p - c|`` between the edited
    image's pixels on ``mask`` and the instructed colour ``c`` (0..255 per channel, so 0..441; ours)."""
    pixels = _as_float_array(edited)
    mask = np.asarray(mask, dtype=bool)
    if pixels.shape[:2] != mask.shape:
        raise ValueError(f"image {pixels.shape[:2]} and mask {mask.shape} differ in size")
    if not mask.any():
        raise ValueError("the glyph mask is empty: there is no text to measure the colour of")
    return float(np.linalg.norm(pixels[mask] - np.asarray(colour, dtype=np.float64), axis=-1).mean())


def nearest_colour(rgb, palette: dict[str, tuple[int, int, int]]) -> str:
    """The name of the palette colour nearest (Euclidean RGB) to ``rgb``."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return min(palette, key=lambda name: float(np.linalg.norm(rgb - np.asarray(palette[name], dtype=np.float64))))


def ink_centroid_x(image, bg, *, threshold: float = 64.0) -> float | None:
    """Mean column of the pixels farther than ``threshold`` (Euclidean RGB) from the background colour; None when
    there is none (the image is blank)."""
    pixels = _as_float_array(image)
    ink = np.linalg.norm(pixels - np.asarray(bg, dtype=np.float64), axis=-1) > threshold
    if not ink.any():
        return None
    return float(np.nonzero(ink)[1].mean())
