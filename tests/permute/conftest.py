"""Fixtures for the permute tests.

``forced_kernels`` lowers the planner's size thresholds so that small arrays (cheap to check) run through every C
kernel, including the streaming-store path with its alignment head and tail, instead of being delegated to NumPy.
"""

from __future__ import annotations

import pytest

from qwenkit.permute import api, planner


@pytest.fixture
def forced_kernels(monkeypatch):
    monkeypatch.setattr(planner, "MIN_KERNEL_BYTES", 0)
    monkeypatch.setattr(planner, "MIN_ROW_BYTES_FOR_ROWS", 0)
    monkeypatch.setattr(planner, "MIN_PLANE_ELEMENTS", 0)
    monkeypatch.setattr(planner, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(planner, "WHOLE_ROW_MIN_BYTES", 16)
    monkeypatch.setattr(planner, "MIN_BYTES_PER_THREAD", 1)
    # small macro tiles, both orders, so that small arrays hold several full tiles plus edges
    monkeypatch.setattr(planner, "TILE_SHAPES", {w: (128, 64, w in (2, 8)) for w in (1, 2, 4, 8, 16)})
    api._cached_plan.cache_clear()
    yield
    api._cached_plan.cache_clear()
