"""Metric parity with a direct loop transcription of CodeTalker's main/cal_metric.py."""

import numpy as np
import pytest

from qwenkit.face import metrics


def _fixture(seed=0, num_vertices=60):
    rng = np.random.default_rng(seed)
    lengths = [11, 17, 14]
    gts = [rng.normal(size=(n, num_vertices, 3)) * 0.01 for n in lengths]
    preds = [np.concatenate([g, rng.normal(size=(3, num_vertices, 3)) * 0.01]) + rng.normal(size=(n + 3, num_vertices,
             3)) * 0.004 for g, n in zip(gts, lengths, strict=True)]
    templates = [rng.normal(size=(num_vertices, 3)) * 0.001 for _ in lengths]
    lips = [2, 5, 7, 11, 30, 41]
    upper = list(range(40, 60))
    return preds, gts, templates, lips, upper


def _codetalker_loops(preds, gts, templates, mouth_map, upper_map):
    """CodeTalker's cal_metric.py, transcribed loop by loop."""
    vertices_gt_all, vertices_pred_all, motion_std_difference = [], [], []
    for vertices_pred, vertices_gt, template in zip(preds, gts, templates, strict=True):
        vertices_pred = vertices_pred[: vertices_gt.shape[0], :, :]
        motion_pred = vertices_pred - template.reshape(1, -1, 3)
        motion_gt = vertices_gt - template.reshape(1, -1, 3)
        vertices_gt_all.extend(list(vertices_gt))
        vertices_pred_all.extend(list(vertices_pred))
        dis = np.array([np.square(motion_gt[:, v, :]) for v in upper_map])
        dis = np.sum(np.transpose(dis, (1, 0, 2)), axis=2)
        gt_motion_std = np.mean(np.std(dis, axis=0))
        dis = np.array([np.square(motion_pred[:, v, :]) for v in upper_map])
        dis = np.sum(np.transpose(dis, (1, 0, 2)), axis=2)
        pred_motion_std = np.mean(np.std(dis, axis=0))
        motion_std_difference.append(gt_motion_std - pred_motion_std)
    vertices_gt_all = np.array(vertices_gt_all)
    vertices_pred_all = np.array(vertices_pred_all)
    dis = np.array([np.square(vertices_gt_all[:, v, :] - vertices_pred_all[:, v, :]) for v in mouth_map])
    dis = np.max(np.sum(np.transpose(dis, (1, 0, 2)), axis=2), axis=1)
    return np.mean(dis), sum(motion_std_difference) / len(motion_std_difference)


def test_lve_and_fdd_match_the_loop_transcription():
    preds, gts, templates, lips, upper = _fixture()
    lve_ref, fdd_ref = _codetalker_loops(preds, gts, templates, lips, upper)
    assert metrics.lve(preds, gts, lips) == pytest.approx(lve_ref, rel=1e-12)
    assert metrics.fdd(preds, gts, templates, upper) == pytest.approx(fdd_ref, rel=1e-9)


def test_a_per_vertex_max_over_time_does_not_match():
    preds, gts, _, lips, _ = _fixture()
    per_vertex = np.mean(np.max(np.concatenate(
        [np.square(p[: len(g), lips] - g[:, lips]).sum(-1) for p, g in zip(preds, gts, strict=True)]), axis=0))
    assert abs(per_vertex - metrics.lve(preds, gts, lips)) > 1e-3 * per_vertex


def test_lve_pools_frames_rather_than_averaging_sequences():
    gts = [np.zeros((1, 2, 3)), np.zeros((3, 2, 3))]
    preds = [np.full((1, 2, 3), 1.0), np.zeros((3, 2, 3))]
    # per-frame max squared error: [3], [0, 0, 0] -> pooled mean 3/4 (a mean of sequence means would be 1.5)
    assert metrics.lve(preds, gts, [0, 1]) == pytest.approx(0.75)


def test_hand_computed_variants():
    gt = np.zeros((2, 2, 3))
    pred = gt.copy()
    pred[0, 0] = [0.003, 0.004, 0.0]  # 5 mm
    pred[1, 1] = [0.0, 0.0, 0.001]  # 1 mm
    assert metrics.lve_sqrt_mm([pred], [gt], [0, 1]) == pytest.approx((5 + 1) / 2)
    assert metrics.mean_vertex_error_mm([pred], [gt]) == pytest.approx((5 + 1) / 4)
    assert metrics.lve([pred], [gt], [0]) == pytest.approx(25e-6 / 2)


def test_fdd_sign_and_zero_for_identical_dynamics():
    preds, gts, templates, _, upper = _fixture()
    cut = [p[: len(g)] for p, g in zip(preds, gts, strict=True)]
    assert metrics.fdd(gts, gts, templates, upper) == 0.0
    still = [np.broadcast_to(t, g.shape) for t, g in zip(templates, gts, strict=True)]
    assert metrics.fdd(still, gts, templates, upper) > 0  # a frozen face has less dynamics than the truth
    assert np.isfinite(metrics.fdd(cut, gts, templates, upper))


def test_ffe_zero_on_identity_and_phase_invariant():
    t = np.arange(64)
    gt = np.zeros((64, 1, 3))
    gt[:, 0, 0] = np.sin(2 * np.pi * 4 * t / 64)
    shifted = np.roll(gt, 5, axis=0)  # same spectrum magnitude, shifted phase
    template = [np.zeros((1, 3))]
    assert metrics.ffe([gt], [gt], template) == 0.0
    assert metrics.ffe([shifted], [gt], template) == pytest.approx(0.0, abs=1e-12)
    doubled = 2 * gt
    # |F_4| / T = 0.5 for a unit sine; doubling adds 0.5 at bin 4 of 33 bins, coordinate 0 of 3
    assert metrics.ffe([doubled], [gt], template) == pytest.approx(0.5 / (33 * 3))


def test_bad_inputs_name_the_problem():
    gt = np.zeros((4, 3, 3))
    with pytest.raises(ValueError, match="fewer than"):
        metrics.lve([gt[:2]], [gt], [0])
    with pytest.raises(ValueError, match="lip_idx"):
        metrics.lve([gt], [gt], [7])
    with pytest.raises(ValueError, match="one each"):
        metrics.lve([gt, gt], [gt], [0])
    with pytest.raises(ValueError, match="template"):
        metrics.fdd([gt], [gt], [np.zeros((2, 3))], [0])
