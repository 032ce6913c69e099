"""Per-frame speed of the face renderers: the Pillow painter (default) against OpenGL through pyrender (headless
EGL, here Mesa's software rasteriser unless a GPU driver is present), on the same 30 posed frames of the
400-vertex synthetic face at 256 x 256, with the silhouette agreement of the two. Writes
benchmarks/results/face_render.{json,md}.

Usage: ``qk-cpu quiet .venv/bin/python benchmarks/face_render.py`` (one torch-free process, one core).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from qwenkit.face.mesh import make_face, pose
from qwenkit.face.render import _BACKGROUND, PILRenderer, PyrenderRenderer

RESULTS = Path(__file__).parent / "results"


def per_frame_ms(renderer, frames, repeats=3) -> tuple[float, list[np.ndarray]]:
    """Best of ``repeats`` passes over ``frames`` (the first render of a GL context is a warm-up, not timed)."""
    renderer.render(frames[0])
    best, images = float("inf"), []
    for _ in range(repeats):
        started = time.perf_counter()
        images = [renderer.render(f) for f in frames]
        best = min(best, time.perf_counter() - started)
    return best / len(frames) * 1000, images


def silhouette(frame: np.ndarray) -> np.ndarray:
    return np.any(np.abs(frame.astype(int) - np.array(_BACKGROUND)) > 8, axis=-1)


def main() -> None:
    load_start = os.getloadavg()
    rng = np.random.default_rng(0)
    face = make_face(20)
    frames = pose(face, rng.uniform(0, 1, (30, 7)).astype(np.float32))
    pil = PILRenderer(face.triangles, face.vertices, face.lip_idx, 256)
    gl = PyrenderRenderer(face.triangles, face.vertices, face.lip_idx, 256, backend="egl")
    pil_ms, pil_images = per_frame_ms(pil, frames)
    gl_ms, gl_images = per_frame_ms(gl, frames)
    from OpenGL.GL import GL_RENDERER, glGetString

    gl_renderer = glGetString(GL_RENDERER).decode()
    gl.close()
    ious = [(silhouette(a) & silhouette(b)).sum() / (silhouette(a) | silhouette(b)).sum()
            for a, b in zip(pil_images, gl_images, strict=True)]
    result = {"load_average_start": load_start, "load_average_end": os.getloadavg(), "frames": len(frames),
              "size": 256, "vertices": len(face.vertices), "triangles": len(face.triangles),
              "pil_ms_per_frame": pil_ms, "egl_ms_per_frame": gl_ms, "egl_gl_renderer": gl_renderer,
              "speedup": pil_ms / gl_ms, "silhouette_iou_min": float(min(ious))}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "face_render.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "face_render.md").write_text(
        "# face renderers: Pillow painter vs pyrender (EGL)\n\n"
        f"Load average {', '.join(f'{x:.2f}' for x in load_start)} at the start, "
        f"{', '.join(f'{x:.2f}' for x in result['load_average_end'])} at the end (shared machine); best of 3 passes "
        f"over {len(frames)} frames, {result['vertices']} vertices, {result['triangles']} triangles, 256 x 256.\n\n"
        "| renderer | ms per frame |\n|---|---|\n"
        f"| PIL painter | {pil_ms:.1f} |\n| pyrender EGL ({gl_renderer}) | {gl_ms:.1f} |\n\n"
        f"EGL is {result['speedup']:.2f}x the PIL speed; silhouette IoU between the two, worst frame: "
        f"{result['silhouette_iou_min']:.4f}.\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
