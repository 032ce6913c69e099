from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from qwenkit.core.serving import serve_in_background
from qwenkit.embed.embedder import Embedder
from qwenkit.embed.reranker import Reranker


@pytest.fixture(scope="module")
def server(tiny_lm):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from qwenkit.embed.serve import create_app

    model, tokenizer = tiny_lm
    embedder = Embedder(model, tokenizer, max_length=64)
    reranker = Reranker(model, tokenizer, max_length=300)
    app = create_app(embedder, reranker, max_batch=64, max_wait_ms=20, max_inputs=16)
    with serve_in_background(app) as url:
        yield url, embedder, reranker, app


def test_openai_client_embeddings_and_dimensions(server):
    openai = pytest.importorskip("openai")
    url, embedder, _, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    texts = ["hello world", "sort a list", "x"]
    response = client.embeddings.create(model="tiny", input=texts)  # the client asks for base64 by default
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    np.testing.assert_allclose(got, embedder.encode(texts), atol=1e-5)
    short = client.embeddings.create(model="tiny", input=texts, dimensions=32, encoding_format="float")
    assert len(short.data[0].embedding) == 32
    assert response.usage.prompt_tokens == sum(len(ids) for ids in embedder.tokenize(texts))
    query = client.embeddings.create(model="tiny", input="sort", extra_body={"instruction": "Find code"})
    np.testing.assert_allclose(query.data[0].embedding, embedder.encode("sort", instruction="Find code"), atol=1e-5)


def test_bad_requests_are_4xx(server):
    openai = pytest.importorskip("openai")
    url, *_ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    for kwargs, message in [({"input": ["ok", ""]}, "empty string"), ({"input": []}, "empty"),
                            ({"input": ["a"] * 17}, "limit"), ({"input": "a", "dimensions": 8}, "out of range"),
                            ({"input": "a", "dimensions": 33}, "out of range")]:
        with pytest.raises(openai.BadRequestError, match=message):
            client.embeddings.create(model="tiny", **kwargs)


def test_concurrent_requests_are_batched(server):
    import httpx

    url, embedder, _, app = server
    texts = [f"text number {i}" for i in range(24)]
    before = app.state.batcher.batches
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda t: httpx.post(f"{url}/v1/embeddings", json={"input": t}, timeout=60), texts))
    got = np.array([r.json()["data"][0]["embedding"] for r in responses], dtype=np.float32)
    np.testing.assert_allclose(got, embedder.encode(texts), atol=1e-5)
    assert app.state.batcher.batches - before < len(texts)


def test_rerank_endpoint(server):
    import httpx

    url, _, reranker, _ = server
    docs = ["def add(a, b): return a + b", "the cat sat", "zzz"]
    body = {"query": "add numbers", "documents": docs, "top_n": 2, "return_documents": True}
    result = httpx.post(f"{url}/v1/rerank", json=body, timeout=60).json()["results"]
    expected = reranker.score("add numbers", docs)
    assert [r["index"] for r in result] == list(np.argsort(-expected)[:2])
    assert result[0]["relevance_score"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert result[0]["document"]["text"] == docs[result[0]["index"]]
    assert httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": []}, timeout=60).status_code == 400
