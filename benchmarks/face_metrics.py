"""Speed of the vectorised LVE/FDD against the loop transcription of CodeTalker's cal_metric.py (the peer every
paper uses), on BIWI-sized arrays, and of the PIL renderer per frame. Writes benchmarks/results/face_metrics.{json,md}.

Usage: ``qk-cpu quiet .venv/bin/python benchmarks/face_metrics.py``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from qwenkit.face import metrics
from qwenkit.face.mesh import make_face, pose
from qwenkit.face.render import PILRenderer

RESULTS = Path(__file__).parent / "results"


def codetalker_loops(preds, gts, templates, mouth_map, upper_map):
    """CodeTalker main/cal_metric.py, loop by loop (the peer)."""
    vertices_gt_all, vertices_pred_all, motion_std_difference = [], [], []
    for vertices_pred, vertices_gt, template in zip(preds, gts, templates, strict=True):
        vertices_pred = vertices_pred[: vertices_gt.shape[0], :, :]
        motion_pred = vertices_pred - template.reshape(1, -1, 3)
        motion_gt = vertices_gt - template.reshape(1, -1, 3)
        vertices_gt_all.extend(list(vertices_gt))
        vertices_pred_all.extend(list(vertices_pred))
        dis = np.sum(np.transpose(np.array([np.square(motion_gt[:, v, :]) for v in upper_map]), (1, 0, 2)), axis=2)
        gt_motion_std = np.mean(np.std(dis, axis=0))
        dis = np.sum(np.transpose(np.array([np.square(motion_pred[:, v, :]) for v in upper_map]), (1, 0, 2)), axis=2)
        pred_motion_std = np.mean(np.std(dis, axis=0))
        motion_std_difference.append(gt_motion_std - pred_motion_std)
    vertices_gt_all, vertices_pred_all = np.array(vertices_gt_all), np.array(vertices_pred_all)
    dis = np.array([np.square(vertices_gt_all[:, v, :] - vertices_pred_all[:, v, :]) for v in mouth_map])
    dis = np.max(np.sum(np.transpose(dis, (1, 0, 2)), axis=2), axis=1)
    return float(np.mean(dis)), float(sum(motion_std_difference) / len(motion_std_difference))


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return min(times), value


def main() -> None:
    rng = np.random.default_rng(0)
    num_vertices, lengths = 23370, [100, 120, 90, 110]  # BIWI meshes, 4 sequences of 4-5 s at 25 fps
    gts = [rng.normal(size=(n, num_vertices, 3)).astype(np.float32) * 0.01 for n in lengths]
    preds = [g + rng.normal(size=g.shape).astype(np.float32) * 0.002 for g in gts]
    templates = [rng.normal(size=(num_vertices, 3)).astype(np.float32) * 0.01 for _ in lengths]
    lips = rng.choice(num_vertices, 4996, replace=False)  # the sizes of BIWI lve.txt / fdd.txt
    upper = rng.choice(num_vertices, 7784, replace=False)
    loop_s, (loop_lve, loop_fdd) = best_of(lambda: codetalker_loops(preds, gts, templates, lips, upper), 2)
    ours_s, (ours_lve, ours_fdd) = best_of(lambda: (metrics.lve(preds, gts, lips),
                                                     metrics.fdd(preds, gts, templates, upper)))
    face = make_face(20)
    renderer = PILRenderer(face.triangles, face.vertices, face.lip_idx, 256)
    frames = pose(face, rng.uniform(0, 1, (30, 7)).astype(np.float32))
    render_s, _ = best_of(lambda: [renderer.render(f) for f in frames])
    result = {
        "load_average": os.getloadavg(),
        "metrics": {"frames": sum(lengths), "vertices": num_vertices, "codetalker_loop_s": loop_s,
                    "vectorised_s": ours_s, "speedup": loop_s / ours_s,
                    "lve_relative_difference": abs(ours_lve - loop_lve) / loop_lve,
                    "fdd_relative_difference": abs(ours_fdd - loop_fdd) / abs(loop_fdd)},
        "render": {"vertices": 400, "triangles": len(face.triangles), "size": 256,
                   "ms_per_frame": render_s / len(frames) * 1000},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "face_metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    m, r = result["metrics"], result["render"]
    (RESULTS / "face_metrics.md").write_text(
        "# face metrics and renderer speed\n\n"
        f"Load average {', '.join(f'{x:.2f}' for x in result['load_average'])}; best of repeats, one process.\n\n"
        "| what | CodeTalker loops (s) | qwenkit (s) | speed-up | LVE rel. diff | FDD rel. diff |\n"
        "|---|---|---|---|---|---|\n"
        f"| LVE+FDD, {m['frames']} frames x {m['vertices']} vertices, 4,996 lip / 7,784 upper ids | "
        f"{m['codetalker_loop_s']:.2f} | {m['vectorised_s']:.2f} | {m['speedup']:.1f}x | "
        f"{m['lve_relative_difference']:.1e} | {m['fdd_relative_difference']:.1e} |\n\n"
        f"PIL renderer: {r['ms_per_frame']:.1f} ms per {r['size']}x{r['size']} frame ({r['vertices']} vertices, "
        f"{r['triangles']} triangles).\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
