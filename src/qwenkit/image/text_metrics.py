"""The text-rendering metrics of the benchmarks Qwen-Image reports (arXiv 2508.02324, the text-rendering tables),
with the text normalisation they need as explicit options.

- **CVTG-2K** (TextCrafter, arXiv 2503.23461; scoring code ``NJU-PCALab/TextCrafter``, ``TextCrafter_Eval``):
  *word accuracy* per image is the fraction of the target words (all text regions of the prompt, split on
  whitespace) that appear among the OCR'd words, each OCR'd word matching at most one target word; *NED* is
  ``1 - lev(p, t) / max(|p|, |t|)`` between the OCR'd text and the targets joined by spaces. Both are averaged over
  images. "HELLO W0RLD" read for "HELLO WORLD" scores word accuracy 1/2 (not 0, as a whole-string match would).
- **LongText-Bench** (X-Omni, arXiv 2507.22058; ``X-Omni-Team/X-Omni`` ``textbench``): a *bag* recall of the target
  units, ``sum_u min(n_pred(u), n_target(u)) / sum_u n_target(u)``, over characters for Chinese and over words for
  English; order does not count ("光临欢迎" read for "欢迎光临" recalls every character: 1.0).
- **ChineseWord** (Qwen-Image's own benchmark of the three levels of the Table of General Standard Chinese
  Characters): *character accuracy* per level, the mean over that level's prompts of the character recall above.

The protocols above are our reading of the papers and their scoring code; the OCR engine differs (the papers use
PP-OCR / Qwen2.5-VL readers, we use RapidOCR or tesseract), so the numbers compare models under our reader, not with
the papers' tables.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from qwenkit.image.metrics import edit_distance


@dataclass(frozen=True)
class TextNormalization:
    """How OCR'd and target text are made comparable before scoring; applied in this order:

    ``width``: NFKC (full-width ``ＱＷＥＮ１２`` and ideographic ``，`` become ``QWEN12`` and ``,``);
    ``simplified``: traditional -> simplified Chinese through OpenCC's ``t2s`` dictionary (``歡迎`` -> ``欢迎``);
    ``casefold``: case-insensitive; ``punctuation``: drop every Unicode punctuation character (categories ``P*``);
    ``whitespace``: ``keep``, ``collapse`` (runs become one space, ends stripped) or ``remove``.
    """

    width: bool = True
    simplified: bool = False
    casefold: bool = True
    punctuation: bool = False
    whitespace: Literal["keep", "collapse", "remove"] = "collapse"

    def __call__(self, text: str) -> str:
        if self.width:
            text = unicodedata.normalize("NFKC", text)
        if self.simplified:
            text = _traditional_to_simplified()(text)
        if self.casefold:
            text = text.casefold()
        if self.punctuation:
            text = "".join(c for c in text if not unicodedata.category(c).startswith("P"))
        if self.whitespace == "collapse":
            text = " ".join(text.split())
        elif self.whitespace == "remove":
            text = "".join(text.split())
        return text


@functools.lru_cache(maxsize=1)
def _traditional_to_simplified():
    try:
        import opencc
    except ImportError as exc:
        raise ImportError("traditional->simplified normalisation needs OpenCC: pip install 'qwenkit[image]' "
                          "(opencc)") from exc
    return opencc.OpenCC("t2s").convert


def words(text: str, normalization: TextNormalization) -> list[str]:
    """The whitespace-separated words of ``text`` after ``normalization`` (punctuation-only words dropped when the
    normalisation drops punctuation)."""
    return [w for w in normalization(text).split() if w]


def cvtg_word_accuracy(prediction: str, targets: Sequence[str], normalization: TextNormalization) -> float:
    """CVTG-2K word accuracy of one image: ``|target words matched| / |target words|``.

    Target words are the words of every text region; the OCR'd words form a multiset and each can match one target
    word (so a word rendered once does not count for two regions). No target words raises: the prompt is malformed.
    """
    target_words = [w for t in targets for w in words(t, normalization)]
    if not target_words:
        raise ValueError(f"no target words in {list(targets)!r}; a CVTG-2K prompt has at least one text region")
    available = Counter(words(prediction, normalization))
    matched = 0
    for word in target_words:
        if available[word] > 0:
            available[word] -= 1
            matched += 1
    return matched / len(target_words)


def cvtg_ned(prediction: str, targets: Sequence[str], normalization: TextNormalization) -> float:
    """CVTG-2K normalised edit-distance similarity: ``1 - lev(p, t) / max(|p|, |t|)`` with ``t`` the regions joined
    by one space; 1 when both are empty."""
    p = normalization(prediction)
    t = normalization(" ".join(targets))
    longest = max(len(p), len(t))
    return 1.0 if longest == 0 else 1.0 - edit_distance(p, t) / longest


def units(text: str, normalization: TextNormalization, unit: Literal["char", "word"]) -> list[str]:
    """Characters (whitespace not counted) or words of the normalised text."""
    if unit == "word":
        return words(text, normalization)
    return [c for c in normalization(text) if not c.isspace()]


def bag_recall(prediction: str, target: str, normalization: TextNormalization,
               unit: Literal["char", "word"] = "char") -> float:
    """LongText-Bench / ChineseWord recall: ``sum_u min(n_p(u), n_t(u)) / sum_u n_t(u)`` over characters or words
    (order-free: a bag of units). An empty target raises (there is nothing to recall)."""
    wanted = Counter(units(target, normalization, unit))
    if not wanted:
        raise ValueError(f"target {target!r} has no {unit}s to recall after normalisation")
    got = Counter(units(prediction, normalization, unit))
    return sum(min(n, got[u]) for u, n in wanted.items()) / sum(wanted.values())


def has_cjk(text: str) -> bool:
    """True when ``text`` holds a CJK unified ideograph (LongText-Bench's Chinese half is scored per character)."""
    return any("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" for c in text)
