import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QWENKIT_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _torch_threads():
    """Two cores: one torch thread per test process keeps runs fast and free of oversubscription."""
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(1)
    yield
