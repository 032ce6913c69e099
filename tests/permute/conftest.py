"""Fixtures for the permute tests."""

from __future__ import annotations

import pytest

from qwenkit.permute.check import forced_kernels as forced_kernels_context


@pytest.fixture
def forced_kernels():
    """Small arrays run through every C kernel (see ``qwenkit.permute.check.forced_kernels``)."""
    with forced_kernels_context():
        yield
