"""OCR readers (RapidOCR, tesseract) and ``text_rendering_scores``: OCR-scored text-rendering evaluation.

RapidOCR (``rapidocr-onnxruntime``, PP-OCRv4 ONNX models shipped inside the wheel) reads English and Chinese offline;
tesseract (Debian ``tesseract-ocr`` + ``tesseract-ocr-chi-sim``) is a second, independent reader. Small images are
upscaled before reading (the recognisers expect text lines about 48 px high).
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Sequence

import numpy as np

from qwenkit.image.metrics import char_accuracy, ned, word_match


class OCRUnavailableError(RuntimeError):
    """An OCR backend is not installed; the message says what to install."""


def crop_to_ink(image, *, threshold: float = 48.0, margin: float = 0.15):
    """Crop to the pixels that differ from the background (the median border colour) by more than ``threshold``,
    plus a margin of ``margin`` x the ink height. Recognition-only OCR hallucinates characters in wide empty space
    ("北京" on a wide canvas reads "北京東"), so single lines are cropped before reading."""
    array = np.asarray(image, dtype=np.float32)
    border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]])
    ink = np.abs(array - np.median(border, axis=0)).max(axis=-1) > threshold
    if not ink.any():
        return image
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    pad = max(2, int(round((rows[-1] - rows[0] + 1) * margin)))
    return image.crop((max(0, cols[0] - pad), max(0, rows[0] - pad), min(image.width, cols[-1] + 1 + pad),
                       min(image.height, rows[-1] + 1 + pad)))


def _prepare(image, min_height: int, crop: bool = False):
    from PIL import Image

    image = image.convert("RGB") if image.mode != "RGB" else image
    if crop:
        image = crop_to_ink(image)
    if image.height < min_height:
        scale = min_height / image.height
        image = image.resize((max(1, round(image.width * scale)), min_height), Image.BICUBIC)
    return image


class RapidOCRReader:
    """RapidOCR: recognition only for single-line crops (fast, no detection misses on tiny images), detection +
    recognition for multi-line images (lines joined top to bottom with newlines)."""

    name = "rapidocr"

    def __init__(self, min_height: int = 96):
        self.min_height = min_height
        self._engine = _rapidocr_engine()

    def read(self, image, *, multiline: bool = False) -> str:
        array = np.asarray(_prepare(image, self.min_height, crop=not multiline))
        if not multiline:
            result, _ = self._engine(array, use_det=False, use_cls=False)
            return "".join(r[0] for r in result or []).strip()
        result, _ = self._engine(array)
        boxes = sorted(result or [], key=lambda r: (min(p[1] for p in r[0]), min(p[0] for p in r[0])))
        return "\n".join(r[1] for r in boxes)


@functools.lru_cache(maxsize=1)
def _rapidocr_engine():
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:
        raise OCRUnavailableError("RapidOCR is not installed; pip install 'qwenkit[image]' "
                                  "(rapidocr-onnxruntime)") from exc
    return RapidOCR()


class TesseractReader:
    """tesseract through pytesseract, English + simplified Chinese, page segmentation 7 (one line) or 6 (a block)."""

    name = "tesseract"

    def __init__(self, languages: str = "eng+chi_sim", min_height: int = 96):
        if shutil.which("tesseract") is None:
            raise OCRUnavailableError("the tesseract binary is missing; apt-get install -y tesseract-ocr "
                                      "tesseract-ocr-eng tesseract-ocr-chi-sim")
        try:
            import pytesseract
        except ImportError as exc:
            raise OCRUnavailableError("pytesseract is not installed; pip install 'qwenkit[image]'") from exc
        available = set(pytesseract.get_languages(config=""))
        missing = [lang for lang in languages.split("+") if lang not in available]
        if missing:
            raise OCRUnavailableError(f"tesseract has no data for {missing}; apt-get install -y "
                                      + " ".join(f"tesseract-ocr-{m.replace('_', '-')}" for m in missing))
        self._pytesseract = pytesseract
        self.languages = languages
        self.min_height = min_height

    def read(self, image, *, multiline: bool = False) -> str:
        psm = 6 if multiline else 7
        image = _prepare(image, self.min_height, crop=not multiline)
        return self._pytesseract.image_to_string(image, lang=self.languages, config=f"--psm {psm}").strip()


def get_reader(name: str):
    """A reader by name: ``rapidocr`` or ``tesseract``."""
    if name == "rapidocr":
        return RapidOCRReader()
    if name == "tesseract":
        return TesseractReader()
    raise ValueError(f"unknown OCR reader {name!r}; use rapidocr or tesseract")


def text_rendering_scores(
    images: Sequence, texts: Sequence[str], *, reader: str | object = "rapidocr", return_reads: bool = False
) -> dict:
    """OCR each image and score it against its target text.

    Returns ``word_accuracy`` (mean whole-string exact match after normalisation; not CVTG-2K's per-word
    accuracy, see :mod:`qwenkit.image.text_benchmarks`), ``ned`` (mean
    ``1 - lev/max_len``), ``char_accuracy`` (mean recovered-character fraction), ``n`` and, with ``return_reads``,
    the raw ``reads``. ``reader`` is ``"rapidocr"``, ``"tesseract"``, or any object with ``read(image, multiline=)``.
    """
    if len(images) != len(texts):
        raise ValueError(f"got {len(images)} images but {len(texts)} texts; pass one target text per image")
    if not images:
        raise ValueError("no images to score")
    ocr = get_reader(reader) if isinstance(reader, str) else reader
    reads = [ocr.read(image, multiline="\n" in text) for image, text in zip(images, texts, strict=True)]
    scores = {
        "word_accuracy": float(np.mean([word_match(r, t) for r, t in zip(reads, texts, strict=True)])),
        "ned": float(np.mean([ned(r, t) for r, t in zip(reads, texts, strict=True)])),
        "char_accuracy": float(np.mean([char_accuracy(r, t) for r, t in zip(reads, texts, strict=True)])),
        "n": len(reads),
    }
    if return_reads:
        scores["reads"] = reads
    return scores
