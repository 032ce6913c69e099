"""Datasets in the FaceFormer-processed layout, which the synthetic corpus, VOCASET and BIWI all share::

    <root>/vertices_npy/<subject>_<sentence>.npy   (T, V*3) float32 vertices, one row per frame
    <root>/wav/<subject>_<sentence>.wav             the driving audio
    <root>/templates.pkl                            {subject: (V, 3) neutral face}
    <root>/regions/lve.txt, fdd.txt                 lip and upper-face vertex ids (CodeTalker's "1, 2, 3" format)

A split is data: ``{"subjects": [...], "sentences": [1, 2, ...]}``; the sentence number is the digits of the file
name's last ``_`` part (``sentence07`` -> 7, ``e37`` -> 37).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qwenkit.face.errors import FaceDataError


@dataclass
class FaceSequence:
    """One utterance: vertices (T, V, 3), its template (V, 3), audio resampled to ``sample_rate``."""

    subject: str
    sentence: str
    vertices: np.ndarray
    template: np.ndarray
    audio: np.ndarray
    sample_rate: int
    fps: float

    @property
    def name(self) -> str:
        return f"{self.subject}_{self.sentence}"


def split_name(stem: str) -> tuple[str, str, int]:
    """``"FaceTalk_170728_03272_TA_sentence01"`` -> (subject, sentence, number)."""
    subject, sep, sentence = stem.rpartition("_")
    digits = re.findall(r"\d+", sentence)
    if not sep or not digits:
        raise FaceDataError(f"file name {stem!r} is not <subject>_<sentence with a number> (e.g. F2_e01)")
    return subject, sentence, int(digits[-1])


def read_region(path: str | Path, key: str | None = None) -> np.ndarray:
    """Vertex ids from a CodeTalker region file (``"1, 2, 3"``, commas and/or whitespace) or, with ``key``, a pickle
    of ``{region: ids}`` such as FLAME_masks.pkl (``key="lips"``)."""
    path = Path(path)
    if not path.is_file():
        raise FaceDataError(f"region file {str(path)!r} does not exist; pass the lve.txt/fdd.txt of your dataset")
    if key is not None:
        with path.open("rb") as f:
            table = pickle.load(f, encoding="latin1")
        if key not in table:
            raise FaceDataError(f"region file {str(path)!r} has no key {key!r}; it has {sorted(table)}")
        return np.asarray(table[key], dtype=np.int64).reshape(-1)
    tokens = [t for t in re.split(r"[,\s]+", path.read_text()) if t]
    try:
        ids = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError as exc:
        raise FaceDataError(f"region file {str(path)!r}: {exc}; expected comma-separated vertex ids") from None
    if ids.size == 0:
        raise FaceDataError(f"region file {str(path)!r} holds no vertex ids")
    return ids


def load_templates(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FaceDataError(f"templates file {str(path)!r} does not exist; it must be a pickle {{subject: (V, 3)}}")
    with path.open("rb") as f:
        table = pickle.load(f, encoding="latin1")
    if not isinstance(table, Mapping):
        raise FaceDataError(f"templates file {str(path)!r} must hold a dict {{subject: (V, 3) array}}")
    return {str(k): np.asarray(v, dtype=np.float32).reshape(-1, 3) for k, v in table.items()}


def read_wav(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 audio at ``sample_rate`` (int16/int32/float wav files; stereo is averaged)."""
    from scipy.io import wavfile

    from qwenkit.face.speech import resample

    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError) as exc:
        raise FaceDataError(f"audio file {str(path)!r} is not a readable wav: {exc}") from None
    if data.dtype.kind == "i":
        data = data.astype(np.float32) / np.iinfo(data.dtype).max
    data = data.astype(np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1)
    return resample(data, rate, sample_rate)


def load_split(
    root: str | Path,
    split: Mapping[str, Sequence],
    *,
    fps: float,
    frame_stride: int = 1,
    sample_rate: int = 16000,
) -> list[FaceSequence]:
    """Every sequence of ``split`` found under ``root`` (sorted by name); ``frame_stride`` keeps every N-th frame."""
    root = Path(root)
    vertices_dir = root / "vertices_npy"
    if not vertices_dir.is_dir():
        raise FaceDataError(f"{str(vertices_dir)!r} does not exist; a dataset root needs vertices_npy/, wav/ and "
                            "templates.pkl (the FaceFormer-processed layout)")
    templates = load_templates(root / "templates.pkl")
    subjects, sentences = set(split["subjects"]), {int(s) for s in split["sentences"]}
    sequences = []
    for path in sorted(vertices_dir.glob("*.npy")):
        subject, sentence, number = split_name(path.stem)
        if subject not in subjects or number not in sentences:
            continue
        if subject not in templates:
            raise FaceDataError(f"templates.pkl has no template for subject {subject!r} (needed by {path.name})")
        template = templates[subject]
        wav = root / "wav" / f"{path.stem}.wav"
        if not wav.is_file():
            raise FaceDataError(f"{path.name} has no audio: {str(wav)!r} does not exist")
        vertices = np.load(path).astype(np.float32)
        if vertices.ndim != 2 or vertices.shape[1] != template.size:
            raise FaceDataError(f"{str(path)!r}: shape {vertices.shape}, expected (T, {template.size}) for "
                                f"{template.shape[0]} vertices of the {subject} template")
        vertices = vertices.reshape(len(vertices), -1, 3)[::frame_stride]
        sequences.append(FaceSequence(subject, sentence, vertices, template, read_wav(wav, sample_rate), sample_rate,
                                      fps / frame_stride))
    if not sequences:
        raise FaceDataError(f"no sequences of subjects {sorted(subjects)} and sentences {sorted(sentences)} under "
                            f"{str(vertices_dir)!r}")
    return sequences


def read_corpus(root: str | Path) -> dict:
    """The manifest (splits, fps, sample rate) of a synthetic corpus written by ``make_synthetic``."""
    path = Path(root) / "corpus.json"
    if not path.is_file():
        raise FaceDataError(f"{str(path)!r} does not exist; make the corpus with `qwenkit face make-synthetic`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FaceDataError(f"{str(path)!r} is not valid JSON: {exc}") from None
