from __future__ import annotations

import math

import pytest
import torch

from qwenkit.embed.merge import slerp, slerp_state_dicts


def test_slerp_endpoints_and_midpoint():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid, torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]))
    quarter = slerp(a, b, 0.25)
    assert torch.allclose(quarter, torch.tensor([math.cos(math.pi / 8), math.sin(math.pi / 8)]))


def test_slerp_falls_back_to_lerp_for_colinear_and_zero():
    a = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)
    zero = torch.zeros(3)
    assert torch.allclose(slerp(zero, a, 0.25), 0.25 * a)


def test_slerp_state_dicts():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(4, 3, generator=g), "ids": torch.arange(3)}
    b = {"w": torch.randn(4, 3, generator=g), "ids": torch.arange(3) + 5}
    assert torch.equal(slerp_state_dicts(a, b, 0.0)["w"], a["w"])
    assert torch.equal(slerp_state_dicts(a, b, 1.0)["w"], b["w"])
    assert torch.equal(slerp_state_dicts(a, b, 0.5)["ids"], a["ids"])
    with pytest.raises(ValueError, match="differ in their tensors"):
        slerp_state_dicts(a, {"w": b["w"]}, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        slerp(a["w"], b["w"], 1.5)
