"""Model merging by spherical linear interpolation (slerp), the third stage of Qwen3-Embedding (paper section 3.3).

Per tensor, with ``a`` and ``b`` flattened and ``Omega = arccos(<a, b> / (|a| |b|))``::

    slerp(a, b; t) = sin((1 - t) Omega) / sin(Omega) * a + sin(t Omega) / sin(Omega) * b

falling back to ``lerp(a, b; t) = (1 - t) a + t b`` when the tensors are nearly colinear (``|cos Omega| > 1 - eps``,
where slerp is numerically unstable), or when either is zero. ``slerp(t=0) == a`` and ``slerp(t=1) == b`` exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

COLINEAR_EPS = 5e-4


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, *, eps: float = COLINEAR_EPS) -> torch.Tensor:
    """Spherical interpolation of two same-shaped tensors at ``t`` in [0, 1] (formula in the module docstring)."""
    if a.shape != b.shape:
        raise ValueError(f"cannot slerp tensors of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t={t}; it must lie in [0, 1]")
    if t == 0.0:
        return a.clone()
    if t == 1.0:
        return b.clone()
    if not a.is_floating_point():
        return a.clone()
    a64, b64 = a.double().flatten(), b.double().flatten()
    norms = a64.norm() * b64.norm()
    cos = float((a64 @ b64) / norms) if norms > 0 else 1.0
    if abs(cos) > 1.0 - eps:
        merged = (1.0 - t) * a64 + t * b64
    else:
        omega = torch.arccos(torch.tensor(cos, dtype=torch.float64))
        sin_omega = torch.sin(omega)
        merged = (torch.sin((1.0 - t) * omega) / sin_omega) * a64 + (torch.sin(t * omega) / sin_omega) * b64
    return merged.reshape(a.shape).to(a.dtype)


def slerp_state_dicts(
    a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], t: float
) -> dict[str, torch.Tensor]:
    """Per-tensor :func:`slerp` of two state dicts with the same keys and shapes (integer buffers are taken from a)."""
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b))[:3], sorted(set(b) - set(a))[:3]
        raise ValueError(f"the models differ in their tensors (only in A: {only_a}, only in B: {only_b}); "
                         "slerp needs two checkpoints of the same architecture")
    return {name: slerp(a[name], b[name], t) for name in a}
