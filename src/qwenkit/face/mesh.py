"""A procedural low-poly face: a grid on the front of a half-ellipsoid with linear blendshapes and known regions.

Units are metres (about 16 x 24 cm, like FLAME/VOCASET heads). Blendshapes are displacement fields with smooth
falloffs around the mouth, the mouth corners and the brows; a speaker's face is the base shape stretched and bumped,
and the same displacement fields are evaluated on it, so every speaker has its own template.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLENDSHAPES = ("jaw_open", "lip_round", "lip_spread", "lip_close", "smile_left", "smile_right", "brow_raise")
WIDTH_M, HEIGHT_M, DEPTH_M = 0.16, 0.24, 0.06
MOUTH_Y_M = -0.05


@dataclass(frozen=True)
class FaceMesh:
    """Vertices (V, 3), triangles (F, 3), blendshape displacements (K, V, 3) and region vertex ids."""

    vertices: np.ndarray
    triangles: np.ndarray
    blendshapes: np.ndarray
    lip_idx: np.ndarray
    upper_idx: np.ndarray


def grid_triangles(rows: int, cols: int) -> np.ndarray:
    """Two triangles per grid cell of a row-major ``rows x cols`` vertex grid, wound counter-clockwise seen from +z."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    top_left = (r * cols + c).reshape(-1)
    top_right, bottom_left = top_left + 1, top_left + cols
    bottom_right = bottom_left + 1
    return np.concatenate([np.stack([top_left, bottom_left, top_right], 1),
                           np.stack([top_right, bottom_left, bottom_right], 1)]).astype(np.int64)


def _blendshape_fields(points: np.ndarray) -> np.ndarray:
    x, y = points[:, 0], points[:, 1]
    zero = np.zeros_like(x)
    lips = np.exp(-((x / 0.035) ** 2 + ((y - MOUTH_Y_M) / 0.02) ** 2))
    below_mouth = 1.0 / (1.0 + np.exp((y - MOUTH_Y_M + 0.004) / 0.004))
    jaw = below_mouth * np.exp(-((x / 0.065) ** 2))

    def corner(side: float) -> np.ndarray:
        return np.exp(-(((x - side * 0.032) ** 2 + (y - MOUTH_Y_M) ** 2) / 0.016 ** 2))

    brows = np.exp(-(((np.abs(x) - 0.03) / 0.028) ** 2) - ((y - 0.05) / 0.016) ** 2)
    fields = [
        (zero, -0.014 * jaw, -0.004 * jaw),
        (-0.35 * x * lips, zero, 0.007 * lips),
        (0.3 * x * lips, 0.001 * lips, -0.002 * lips),
        (zero, -0.5 * (y - MOUTH_Y_M) * lips, 0.002 * lips),
        (0.004 * corner(1), 0.007 * corner(1), -0.002 * corner(1)),
        (-0.004 * corner(-1), 0.007 * corner(-1), -0.002 * corner(-1)),
        (zero, 0.007 * brows, 0.001 * brows),
    ]
    return np.stack([np.stack(f, axis=1) for f in fields]).astype(np.float32)


def make_face(grid: int = 20, *, width_scale: float = 1.0, height_scale: float = 1.0,
              bumps: np.ndarray | None = None) -> FaceMesh:
    """A ``grid x grid`` face; ``width_scale``/``height_scale`` stretch it and ``bumps`` (V,) add depth detail."""
    if grid < 6:
        raise ValueError(f"grid must be at least 6 vertices a side, got {grid}")
    u, v = np.meshgrid(np.linspace(-1, 1, grid), np.linspace(1, -1, grid))
    x = u * WIDTH_M / 2 * width_scale
    y = v * HEIGHT_M / 2 * height_scale
    radius = np.clip(1.0 - u ** 2 * 0.85 - v ** 2 * 0.85, 0.0, None)
    z = DEPTH_M * np.sqrt(radius) + 0.012 * np.exp(-((u / 0.18) ** 2 + ((v - 0.05) / 0.25) ** 2))  # a nose ridge
    vertices = np.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], 1).astype(np.float32)
    if bumps is not None:
        vertices[:, 2] += bumps.astype(np.float32)
    canonical = np.stack([u.reshape(-1) * WIDTH_M / 2, v.reshape(-1) * HEIGHT_M / 2], 1)
    lips = ((canonical[:, 0] / 0.036) ** 2 + ((canonical[:, 1] - MOUTH_Y_M) / 0.016) ** 2) <= 1.0
    upper = canonical[:, 1] > 0.015
    return FaceMesh(vertices, grid_triangles(grid, grid), _blendshape_fields(np.c_[canonical, vertices[:, 2]]),
                    np.flatnonzero(lips), np.flatnonzero(upper))


def pose(mesh: FaceMesh, weights: np.ndarray) -> np.ndarray:
    """Vertices for blendshape weights (T, K): ``template + sum_k w_{t,k} B_k`` -> (T, V, 3)."""
    weights = np.asarray(weights, dtype=np.float32)
    return mesh.vertices[None] + np.einsum("tk,kvc->tvc", weights, mesh.blendshapes)
