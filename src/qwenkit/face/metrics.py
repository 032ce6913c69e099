"""Evaluation metrics of speech-driven 3D facial animation, on lists of per-sequence (T, V, 3) vertex arrays.

``lve`` and ``fdd`` are exactly what CodeTalker's ``main/cal_metric.py`` computes (the de-facto reference of
FaceFormer, CodeTalker, SelfTalk and their followers); the other metrics carry their own names so they are never
mistaken for it:

- ``lve``: for every frame, the max over lip vertices of the **squared** L2 error; the mean over all frames of all
  sequences pooled (not a mean of per-sequence means). No square root, units of the meshes squared.
- ``fdd``: per sequence, ``std over time of ||motion_v||^2`` (``motion = vertices - template``) averaged over the
  upper-face vertices, for ground truth and prediction; the **signed** difference ``gt - pred`` averaged over sequences.
- ``lve_sqrt_mm``: the same per-frame max, of the Euclidean distance, times 1000 (metres to millimetres; Imitator's
  ``lip_max_l2``).
- ``mean_vertex_error_mm``: mean Euclidean distance over all vertices and frames pooled, times 1000.
- ``ffe``: a Fourier frequency error (StyleSpeaker names the metric but its definition is not public; the form is
  ours): per sequence, the magnitude spectra ``|rfft_t(motion)| / T`` of the predicted and ground-truth motion of
  every selected vertex coordinate, their mean absolute difference over frequencies, vertices and coordinates; the
  mean over sequences. It compares *how* the face moves (rhythm, amplitude per frequency) without requiring frame
  alignment of the phase, which is why it measures style.

In every function a prediction longer than its ground truth is cut to the ground-truth length (as CodeTalker does);
a shorter one is an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _pairs(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predicted sequences for {len(gts)} ground-truth sequences; give one each")
    if not gts:
        raise ValueError("no sequences to score")
    pairs = []
    for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
        if gt.ndim != 3 or gt.shape[2] != 3 or pred.ndim != 3 or pred.shape[1:] != gt.shape[1:]:
            raise ValueError(f"sequence {i}: prediction {pred.shape} and ground truth {gt.shape} must both be "
                             "(T, V, 3) with the same V")
        if pred.shape[0] < gt.shape[0]:
            raise ValueError(f"sequence {i}: the prediction has {pred.shape[0]} frames, fewer than the ground "
                             f"truth's {gt.shape[0]}")
        pairs.append((pred[: gt.shape[0]], gt))
    return pairs


def _index(indices: Sequence[int] | np.ndarray, num_vertices: int, name: str) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError(f"{name} is empty; give the vertex ids of the region")
    if idx.min() < 0 or idx.max() >= num_vertices:
        raise ValueError(f"{name} holds vertex ids outside 0..{num_vertices - 1} (min {idx.min()}, max {idx.max()})")
    return idx


def lve(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], lip_idx: Sequence[int] | np.ndarray) -> float:
    """Lip vertex error (CodeTalker): ``mean_{all frames f} max_{v in lips} ||pred_{f,v} - gt_{f,v}||^2``."""
    pairs = _pairs(preds, gts)
    idx = _index(lip_idx, pairs[0][1].shape[1], "lip_idx")
    per_frame = np.concatenate([(np.square(p[:, idx] - g[:, idx]).sum(-1)).max(axis=1) for p, g in pairs])
    return float(per_frame.mean())


def lve_sqrt_mm(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], lip_idx: Sequence[int] | np.ndarray) -> float:
    """Max lip distance in mm: ``1000 * mean_f max_{v in lips} ||pred_{f,v} - gt_{f,v}||`` (meshes in metres)."""
    pairs = _pairs(preds, gts)
    idx = _index(lip_idx, pairs[0][1].shape[1], "lip_idx")
    per_frame = np.concatenate([np.linalg.norm(p[:, idx] - g[:, idx], axis=-1).max(axis=1) for p, g in pairs])
    return float(1000.0 * per_frame.mean())


def mean_vertex_error_mm(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> float:
    """Mean vertex error in mm: ``1000 * mean_{f,v} ||pred_{f,v} - gt_{f,v}||`` over all frames pooled."""
    pairs = _pairs(preds, gts)
    distances = np.concatenate([np.linalg.norm(p - g, axis=-1).reshape(-1) for p, g in pairs])
    return float(1000.0 * distances.mean())


def _templates(templates: Sequence[np.ndarray], count: int, num_vertices: int) -> list[np.ndarray]:
    if len(templates) != count:
        raise ValueError(f"{len(templates)} templates for {count} sequences; give one (V, 3) template per sequence")
    out = []
    for i, template in enumerate(templates):
        template = np.asarray(template, dtype=np.float64).reshape(-1, 3)
        if template.shape[0] != num_vertices:
            raise ValueError(f"template {i} has {template.shape[0]} vertices, the sequences {num_vertices}")
        out.append(template)
    return out


def fdd(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    templates: Sequence[np.ndarray],
    upper_idx: Sequence[int] | np.ndarray,
) -> float:
    """Upper-face dynamics deviation (CodeTalker), signed and per sequence.

    ``dyn(x) = mean_{v in upper} std_t ||x_{t,v} - template_v||^2``; ``FDD = mean_sequences (dyn(gt) - dyn(pred))``.
    """
    pairs = _pairs(preds, gts)
    num_vertices = pairs[0][1].shape[1]
    idx = _index(upper_idx, num_vertices, "upper_idx")
    differences = []
    for (pred, gt), template in zip(pairs, _templates(templates, len(pairs), num_vertices), strict=True):
        dynamics = [np.square(x[:, idx] - template[idx]).sum(-1).std(axis=0).mean() for x in (gt, pred)]
        differences.append(dynamics[0] - dynamics[1])
    return float(np.mean(differences))


def ffe(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    templates: Sequence[np.ndarray],
    vertex_idx: Sequence[int] | np.ndarray | None = None,
) -> float:
    """Fourier frequency error (our form; see the module docstring).

    ``FFE = mean_sequences mean_{k,v,c} | |F_k(m^pred_{:,v,c})| - |F_k(m^gt_{:,v,c})| | / T`` with ``m = x - template``
    and ``F_k`` the real FFT over time; ``vertex_idx`` selects vertices (default: all).
    """
    pairs = _pairs(preds, gts)
    num_vertices = pairs[0][1].shape[1]
    idx = np.arange(num_vertices) if vertex_idx is None else _index(vertex_idx, num_vertices, "vertex_idx")
    errors = []
    for (pred, gt), template in zip(pairs, _templates(templates, len(pairs), num_vertices), strict=True):
        frames = gt.shape[0]
        spectra = [np.abs(np.fft.rfft(x[:, idx] - template[idx], axis=0)) / frames for x in (pred, gt)]
        errors.append(np.abs(spectra[0] - spectra[1]).mean())
    return float(np.mean(errors))
