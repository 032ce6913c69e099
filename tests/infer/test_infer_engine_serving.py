"""Regression: the serving benchmark's own request mix (``benchmarks/infer_serving.py``) over ``/v1/completions`` on
the tiny Qwen3 is answered with 200s only (a row of that benchmark once failed with a 500 there)."""

from __future__ import annotations

import importlib.util
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from qwenkit.infer.server import create_app

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "infer_serving.py"


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("infer_serving_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_mix_on_text_completions_never_500s(serve, dense, tokenizer):
    benchmark = _benchmark_module()
    statuses: list[int] = []
    lock = threading.Lock()

    def record(response):
        with lock:
            statuses.append(response.status_code)

    app = create_app(dense, tokenizer, model_name="bench")
    with serve(app) as url:
        driver = benchmark.Driver(url, "bench", chat=False)
        original_post, original_stream = driver.http.post, driver.http.stream

        def post(*args, **kwargs):
            response = original_post(*args, **kwargs)
            record(response)
            return response

        def stream(*args, **kwargs):
            context = original_stream(*args, **kwargs)
            return _Recorded(context, record)

        driver.http.post, driver.http.stream = post, stream
        try:
            measured = {"throughput": {str(n): benchmark.throughput_run(driver, n, 16) for n in (1, 8, 32)},
                        **benchmark.latencies(driver, 16, 32)}
            with ThreadPoolExecutor(4) as pool:  # streams read to the end, with their chunks checked
                bodies = list(pool.map(lambda i: _stream_body(url, f"stream {i}"), range(4)))
        finally:
            driver.http.close()
        health = httpx.get(url + "/health")
    assert set(statuses) == {200}, statuses
    assert measured["throughput"]["32"]["tokens"] > 0 and measured["short_beside_long"]["long_tokens"] > 0
    assert all(body[-1] == "[DONE]" and all("error" not in json.loads(b) for b in body[:-1]) for body in bodies)
    assert health.status_code == 200


class _Recorded:
    def __init__(self, context, record):
        self.context, self.record = context, record

    def __enter__(self):
        response = self.context.__enter__()
        self.record(response)
        return response

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)


def _stream_body(url: str, prompt: str) -> list[str]:
    body = {"model": "bench", "prompt": prompt, "max_tokens": 16, "temperature": 0.0, "stream": True}
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
