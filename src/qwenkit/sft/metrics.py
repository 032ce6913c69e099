"""Accuracy, calibration and answer extraction for SFT with and without rationales (pure functions, no torch).

Calibration follows "Rationales Are Not Silver Bullets" (Zhu et al., arXiv 2505.24147, Sec. 3 "Reliability"): the
confidence of a prediction is its self-consistency share (the majority answer's share of k samples), and reliability
is the expected calibration error over 10 equal-width bins. The paper's code bins ``conf*10`` without publishing the
ECE formula; we use the standard one (Guo et al. 2017, Eq. 3) with bins ``(lo, hi]`` and a confidence of exactly 0
placed in the first bin.

Answer extraction (documented in docs/sft.md, tested on canned outputs): the *last* "The answer is X" wins; without
that phrase, numeric tasks fall back to the last number in the text, choice tasks to a lone choice letter at the end,
label tasks to the last label mentioned. Numbers compare with an absolute tolerance of 1e-4, as the paper's rationale
filter does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

AnswerKind = Literal["number", "choice", "label"]
NUMBER_TOLERANCE = 1e-4

_ANSWER_IS = re.compile(r"the (?:final )?answer is[:\s]*(.+?)(?:\.\s|\.?$|\n)", re.IGNORECASE | re.DOTALL)
_NUMBER = re.compile(r"[-+]?\$?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
_LETTER = re.compile(r"^\(?([A-Z])\)?(?:[.):\s]|$)")


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin ``(lower, upper]`` of a reliability diagram."""

    lower: float
    upper: float
    count: int
    accuracy: float
    """Share correct in the bin (NaN when empty)."""
    mean_confidence: float
    """Mean confidence in the bin (NaN when empty)."""


def _as_arrays(confidences: Sequence[float], correct: Sequence[bool | int]) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidences, dtype=np.float64)
    hits = np.asarray(correct, dtype=np.float64)
    if conf.shape != hits.shape or conf.ndim != 1:
        raise ValueError(f"confidences ({conf.shape}) and correct ({hits.shape}) must be 1-D and of equal length")
    if conf.size and (np.any(conf < 0) or np.any(conf > 1) or not np.all(np.isfinite(conf))):
        raise ValueError("confidences must lie in [0, 1]")
    if hits.size and not np.all((hits == 0) | (hits == 1)):
        raise ValueError("correct must hold booleans or 0/1")
    return conf, hits


def bin_indices(confidences: Sequence[float], n_bins: int = 10) -> np.ndarray:
    """Bin of each confidence among ``n_bins`` equal-width bins ``(b/n, (b+1)/n]``; confidence 0 goes to bin 0.

    Edges are ``b / n_bins`` (exact decimal fractions such as 0.3 land in the bin they close, e.g. (0.2, 0.3]).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = np.asarray(confidences, dtype=np.float64)
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)


def reliability_bins(
    confidences: Sequence[float], correct: Sequence[bool | int], n_bins: int = 10
) -> list[ReliabilityBin]:
    """The data of a reliability diagram: per bin ``(lo, hi]`` its count, accuracy and mean confidence."""
    conf, hits = _as_arrays(confidences, correct)
    index = bin_indices(conf, n_bins)
    bins = []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        bins.append(
            ReliabilityBin(
                lower=b / n_bins,
                upper=(b + 1) / n_bins,
                count=count,
                accuracy=float(hits[members].mean()) if count else math.nan,
                mean_confidence=float(conf[members].mean()) if count else math.nan,
            )
        )
    return bins


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool | int], n_bins: int = 10) -> float:
    """ECE = sum_b (n_b / N) * |acc_b - conf_b| over equal-width bins ``(lo, hi]`` (Guo et al. 2017, Eq. 3).

    ``acc_b`` is the share correct and ``conf_b`` the mean confidence of the ``n_b`` predictions in bin b; empty bins
    contribute nothing. An empty input has ECE 0.
    """
    bins = reliability_bins(confidences, correct, n_bins)
    total = sum(b.count for b in bins)
    if total == 0:
        return 0.0
    return float(sum(b.count / total * abs(b.accuracy - b.mean_confidence) for b in bins if b.count))


def maximum_calibration_error(confidences: Sequence[float], correct: Sequence[bool | int], n_bins: int = 10) -> float:
    """MCE = max_b |acc_b - conf_b| over the non-empty bins (Guo et al. 2017, Eq. 5); 0 for an empty input."""
    gaps = [abs(b.accuracy - b.mean_confidence) for b in reliability_bins(confidences, correct, n_bins) if b.count]
    return float(max(gaps)) if gaps else 0.0


def brier_score(confidences: Sequence[float], correct: Sequence[bool | int]) -> float:
    """Brier = (1/N) sum_i (c_i - y_i)^2 of the top-answer confidence against correctness (Brier 1950, binary form)."""
    conf, hits = _as_arrays(confidences, correct)
    if conf.size == 0:
        return 0.0
    return float(np.mean((conf - hits) ** 2))


def self_consistency(answers: Sequence[str | None]) -> tuple[str | None, float]:
    """(majority answer, its share of all k samples), the paper's self-consistency confidence (Sec. 3).

    Ties go to the tied answer that was sampled first, so the result depends only on the sample order. Samples with
    no extractable answer (None) count in k but cannot win unless every sample is None (then ``(None, 1.0)``).
    An empty list raises.
    """
    if not answers:
        raise ValueError("self_consistency needs at least one sampled answer")
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    if not counts:
        return None, 1.0
    best = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == best)
    return winner, best / len(answers)


def _clean(text: str) -> str:
    return text.strip().strip("\"'`*").strip().rstrip(".!,;").strip()


def parse_number(text: str) -> float | None:
    """The first number in ``text`` ("$1,234.5" -> 1234.5, "-3" -> -3.0, "1/2" -> 0.5); None when there is none."""
    fraction = re.search(r"([-+]?\d+)\s*/\s*(\d+)", text)
    match = _NUMBER.search(text)
    if fraction and (match is None or fraction.start() <= match.start()) and int(fraction.group(2)) != 0:
        return int(fraction.group(1)) / int(fraction.group(2))
    if match is None:
        return None
    return float(match.group(0).replace("$", "").replace(",", ""))


def format_number(value: float) -> str:
    """Canonical text of a number: integers without a decimal point, others with up to 6 significant decimals."""
    if abs(value - round(value)) < NUMBER_TOLERANCE:
        return str(int(round(value)))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def extract_answer(text: str, kind: AnswerKind = "label", choices: Sequence[str] | None = None) -> str | None:
    """The final answer in a model output, canonicalised for comparison; None when none can be found.

    - ``number``: the number after the last "The answer is"; otherwise the last number in the text.
      Returned via :func:`format_number` ("18.0" -> "18").
    - ``choice``: a letter A-Z ("(B)", "B)", "B.", "B"), or the text of one of ``choices`` (mapped to its letter),
      after the last "The answer is"; otherwise a lone letter at the very end of the text.
    - ``label``: the phrase after the last "The answer is", lower-cased; with ``choices`` (the label set) it must be
      one of them (matched case-insensitively, also as the first word); otherwise the label set's last mention.
    """
    found = list(_ANSWER_IS.finditer(text))
    phrase = _clean(found[-1].group(1)) if found else None
    if kind == "number":
        if phrase is not None and (value := parse_number(phrase)) is not None:
            return format_number(value)
        numbers = _NUMBER.findall(text)
        if not numbers:
            return None
        last = parse_number(numbers[-1])
        return None if last is None else format_number(last)
    if kind == "choice":
        letters = [chr(ord("A") + i) for i in range(len(choices))] if choices else None
        if phrase is not None:
            letter = _LETTER.match(phrase.upper() if len(phrase) <= 3 else phrase)
            if letter and (letters is None or letter.group(1) in letters):
                return letter.group(1)
            if choices:
                lowered = phrase.lower()
                for i, choice in enumerate(choices):
                    if lowered == choice.strip().lower():
                        return letters[i]
            return None
        tail = re.search(r"\(?([A-Z])\)?\.?\s*$", text.strip())
        if tail and (letters is None or tail.group(1) in letters):
            return tail.group(1)
        return None
    labels = [c.strip().lower() for c in choices] if choices else None
    if phrase is not None:
        lowered = phrase.lower()
        if labels is None:
            return lowered
        if lowered in labels:
            return lowered
        first = re.split(r"[\s.,;:!?]", lowered, maxsplit=1)[0]
        return first if first in labels else None
    if labels is None:
        return None
    lowered = text.lower()
    positions = [(m.start(), label) for label in labels for m in re.finditer(rf"\b{re.escape(label)}\b", lowered)]
    return max(positions)[1] if positions else None


def canonical_gold(answer: str, kind: AnswerKind, choices: Sequence[str] | None = None) -> str:
    """The gold answer in the form :func:`extract_answer` returns (so the two compare with ``==``)."""
    if kind == "number":
        value = parse_number(answer)
        if value is None:
            raise ValueError(f"gold answer {answer!r} is not a number")
        return format_number(value)
    if kind == "choice":
        letter = answer.strip().strip("()").upper()
        if len(letter) == 1 and letter.isalpha():
            return letter
        if choices:
            for i, choice in enumerate(choices):
                if answer.strip().lower() == choice.strip().lower():
                    return chr(ord("A") + i)
        raise ValueError(f"gold answer {answer!r} is neither a choice letter nor one of the choices")
    return answer.strip().lower()


def answers_match(predicted: str | None, gold: str, kind: AnswerKind) -> bool:
    """Whether a canonical prediction equals the canonical gold (numbers within an absolute 1e-4)."""
    if predicted is None:
        return False
    if kind == "number":
        a, b = parse_number(predicted), parse_number(gold)
        return a is not None and b is not None and abs(a - b) <= NUMBER_TOLERANCE
    return predicted == gold


@dataclass(frozen=True)
class LineFit:
    """Least-squares line ``y = slope * x + intercept`` with R^2 and a bootstrap percentile interval."""

    slope: float
    intercept: float
    r_squared: float
    slope_interval: tuple[float, float]
    r_squared_interval: tuple[float, float]
    n_points: int


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """(slope, intercept, R^2) of the ordinary least-squares line; R^2 = 1 - SS_res / SS_tot (0 when y is constant)."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.size < 2 or np.ptp(xs) == 0:
        raise ValueError("a line needs at least two points with different x")
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = float(np.sum((ys - (slope * xs + intercept)) ** 2))
    total = float(np.sum((ys - ys.mean()) ** 2))
    r_squared = 1.0 - residual / total if total > 0 else 0.0
    return float(slope), float(intercept), r_squared


def bootstrap_line_fit(
    x: Sequence[float], y: Sequence[float], *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> LineFit:
    """:func:`fit_line` plus percentile intervals of slope and R^2 over ``resamples`` bootstrap resamples of points.

    Resamples whose x values are all equal (no line) are skipped. The form (points resampled with replacement,
    percentile interval) is ours; the paper reports only the fitted line.
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    slope, intercept, r_squared = fit_line(xs, ys)
    rng = np.random.default_rng(seed)
    slopes, r2s = [], []
    for _ in range(resamples):
        pick = rng.integers(0, xs.size, xs.size)
        if np.ptp(xs[pick]) == 0:
            continue
        s, _, r2 = fit_line(xs[pick], ys[pick])
        slopes.append(s)
        r2s.append(r2)
    tail = (1 - level) / 2 * 100
    return LineFit(
        slope, intercept, r_squared, _percentiles(slopes, tail), _percentiles(r2s, tail), int(xs.size)
    )


def _percentiles(values: Sequence[float], tail: float) -> tuple[float, float]:
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
