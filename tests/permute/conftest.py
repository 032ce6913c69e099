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
    monkeypatch.setattr(planner, "TILE_P_BYTES", 128)
    monkeypatch.setattr(planner, "TILE_Q_BYTES", 64)
    api._cached_plan.cache_clear()
    yield
    api._cached_plan.cache_clear()
