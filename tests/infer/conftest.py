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
    import contextlib
    import socket
    import threading
    import time

    import uvicorn

    @contextlib.contextmanager
    def run(app):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=30)

    return run
