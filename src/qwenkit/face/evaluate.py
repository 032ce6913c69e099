"""Scoring a model (or a zero-motion baseline) on a list of sequences with every metric of ``qwenkit.face.metrics``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qwenkit.face import metrics
from qwenkit.face.data import FaceSequence
from qwenkit.face.train import FaceKit, Prepared, motion_of, reference_clip

Clip = tuple[np.ndarray, np.ndarray]


def score(preds: list[np.ndarray], sequences: list[FaceSequence], lip_idx, upper_idx) -> dict[str, float]:
    gts = [s.vertices for s in sequences]
    templates = [s.template for s in sequences]
    return {
        "lve": metrics.lve(preds, gts, lip_idx),
        "lve_sqrt_mm": metrics.lve_sqrt_mm(preds, gts, lip_idx),
        "mve_mm": metrics.mean_vertex_error_mm(preds, gts),
        "fdd": metrics.fdd(preds, gts, templates, upper_idx),
        "ffe": metrics.ffe(preds, gts, templates),
        "ffe_lips": metrics.ffe(preds, gts, templates, lip_idx),
    }


def zero_motion(sequences: list[FaceSequence]) -> list[np.ndarray]:
    """The template held still: the floor every model must beat."""
    return [np.broadcast_to(s.template[None], s.vertices.shape).copy() for s in sequences]


def speaker_references(sequences: list[FaceSequence], scale: float, frames: int) -> dict[str, Clip]:
    """Each speaker's reference clip: the first ``frames`` frames of its lowest-numbered sentence."""
    from qwenkit.face.data import split_name

    first: dict[str, FaceSequence] = {}
    for seq in sorted(sequences, key=lambda s: split_name(s.name)[2]):
        first.setdefault(seq.subject, seq)
    return {subject: reference_clip(Prepared(seq, motion_of(seq, scale), -1), frames) for subject, seq in first.items()}


def predict_all(kit: FaceKit, sequences: list[FaceSequence], reference_of: Callable[[FaceSequence], Clip] | None = None,
                speaker_of: Callable[[FaceSequence], int] | None = None) -> list[np.ndarray]:
    """Predictions for every sequence, conditioned by ``reference_of(seq)`` or ``speaker_of(seq)``."""
    preds = []
    for seq in sequences:
        clip = reference_of(seq) if reference_of is not None else None
        speaker = speaker_of(seq) if speaker_of is not None else 0
        preds.append(kit.predict(seq.audio, len(seq.vertices), seq.template, reference_clip_frames=clip,
                                 speaker=speaker))
    return preds
