from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    from qwenkit.lm import build_synthetic_tokenizer

    return build_synthetic_tokenizer()


@pytest.fixture(scope="session")
def dense(tokenizer):
    from qwenkit.lm import tiny_qwen3_for

    return tiny_qwen3_for(tokenizer, size="nano", moe=False).eval()


@pytest.fixture(scope="session")
def moe(tokenizer):
    from qwenkit.lm import tiny_qwen3_for

    return tiny_qwen3_for(tokenizer, size="nano", moe=True).eval()


@pytest.fixture(scope="session")
def serve():
    """``serve(app)`` starts a real uvicorn server on 127.0.0.1 (free port) in a thread; yields its base URL."""
    from qwenkit.core.serving import serve_in_background

    return serve_in_background
