from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from qwenkit.core.serving import serve_in_background
from qwenkit.embed.embedder import Embedder
from qwenkit.embed.reranker import Reranker

LIMIT = 64


@pytest.fixture(scope="module")
def models(tiny_lm):
    model, tokenizer = tiny_lm
    embedder = Embedder(model, tokenizer, max_length=LIMIT, prompts={"query": "Q: ", "document": ""})
    return embedder, Reranker(model, tokenizer, max_length=400)


@pytest.fixture(scope="module")
def server(models):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from qwenkit.embed.serve import create_app

    embedder, reranker = models
    app = create_app(embedder, reranker, max_batch=64, max_inputs=16, model_name="tiny", reranker_name="tiny-rr")
    with serve_in_background(app) as url:
        yield url, embedder, reranker, app


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key="unused", max_retries=0)


def _post(url: str, path: str, body: dict):
    import httpx

    return httpx.post(f"{url}{path}", json=body, timeout=60)


def test_openai_client_embeddings_and_dimensions(server, client):
    _, embedder, _, _ = server
    texts = ["hello world", "sort a list", "x"]
    response = client.embeddings.create(model="tiny", input=texts)  # the client asks for base64 by default
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    np.testing.assert_allclose(got, embedder.encode(texts), atol=1e-5)
    short = client.embeddings.create(model="tiny", input=texts, dimensions=32, encoding_format="float")
    assert len(short.data[0].embedding) == 32
    assert response.usage.prompt_tokens == sum(len(ids) for ids in embedder.tokenize(texts))
    query = client.embeddings.create(model="tiny", input="sort", extra_body={"instruction": "Find code"})
    np.testing.assert_allclose(query.data[0].embedding, embedder.encode("sort", instruction="Find code"), atol=1e-5)


def test_prompts_through_extra_body(server, client):
    _, embedder, _, _ = server
    named = client.embeddings.create(model="tiny", input="sort", extra_body={"prompt_name": "query"})
    np.testing.assert_allclose(named.data[0].embedding, embedder.encode("Q: sort"), atol=1e-5)
    literal = client.embeddings.create(model="tiny", input="sort", extra_body={"prompt": "Q: "})
    np.testing.assert_allclose(literal.data[0].embedding, named.data[0].embedding, atol=1e-6)
    import openai

    with pytest.raises(openai.BadRequestError, match="not a prompt of this model"):
        client.embeddings.create(model="tiny", input="sort", extra_body={"prompt_name": "passage"})


def test_token_id_inputs(server, client):
    _, embedder, _, _ = server
    texts = ["hello world", "sort a list"]
    ids = embedder.tokenize(texts)
    many = client.embeddings.create(model="tiny", input=ids, encoding_format="float")
    np.testing.assert_allclose([d.embedding for d in many.data], embedder.encode(texts), atol=1e-5)
    assert many.usage.prompt_tokens == sum(len(row) for row in ids)
    one = client.embeddings.create(model="tiny", input=ids[0], encoding_format="float")
    np.testing.assert_allclose(one.data[0].embedding, embedder.encode(texts[0]), atol=1e-5)
    import openai

    vocab = embedder.model.get_input_embeddings().num_embeddings
    with pytest.raises(openai.BadRequestError, match="outside this model's vocabulary"):
        client.embeddings.create(model="tiny", input=[1, vocab])
    with pytest.raises(openai.BadRequestError, match="text inputs only"):
        client.embeddings.create(model="tiny", input=[1, 2], extra_body={"prompt_name": "query"})


def test_over_length_is_400_unless_truncation_is_asked_for(server, client, models):
    import openai
    from fastapi.testclient import TestClient

    from qwenkit.embed.serve import create_app

    _, embedder, _, _ = server
    long_text = "abcdefghij" * 20
    with pytest.raises(openai.BadRequestError, match=f"limit of {LIMIT}") as caught:
        client.embeddings.create(model="tiny", input=["ok", long_text])
    assert caught.value.body["param"] == "input"
    cut = client.embeddings.create(model="tiny", input=["ok", long_text], encoding_format="float",
                                   extra_body={"truncate": True})
    np.testing.assert_allclose(cut.data[1].embedding, embedder.encode(long_text), atol=1e-5)
    assert cut.usage.prompt_tokens == len(embedder.tokenize(["ok"])[0]) + LIMIT
    long_ids = list(range(1, 100))
    with pytest.raises(openai.BadRequestError, match="99 tokens"):
        client.embeddings.create(model="tiny", input=long_ids)
    ids_cut = client.embeddings.create(model="tiny", input=long_ids, extra_body={"truncate": True})
    assert ids_cut.usage.prompt_tokens == LIMIT

    with TestClient(create_app(embedder, truncate=True)) as local:
        by_default = local.post("/v1/embeddings", json={"input": long_text})
        assert by_default.status_code == 200 and by_default.json()["usage"]["prompt_tokens"] == LIMIT
        refused = local.post("/v1/embeddings", json={"input": long_text, "truncate": False})
        assert refused.status_code == 400


def test_bad_requests_are_openai_shaped_4xx(server, client):
    import openai

    url, *_ = server
    for kwargs, message in [({"input": ["ok", ""]}, "empty string"), ({"input": []}, "empty"),
                            ({"input": ["a"] * 17}, "limit"), ({"input": "a", "dimensions": 8}, "out of range"),
                            ({"input": "a", "dimensions": 33}, "out of range")]:
        with pytest.raises(openai.BadRequestError, match=message):
            client.embeddings.create(model="tiny", **kwargs)
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="text-embedding-3-small", input="a")
    assert missing.value.code == "model_not_found" and missing.value.body["param"] == "model"
    for path, body, status, words in [
        ("/v1/embeddings", {"input": "a", "colour": "red"}, 400, "colour"),
        ("/v1/embeddings", {"input": ["a", 1]}, 400, "input"),
        ("/v1/embeddings", {"input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
        ("/v1/nothing", {}, 404, "no route"),
        ("/v1/rerank", {"query": "q", "documents": [{"txt": "a"}]}, 400, "documents"),
        ("/v1/score", {"text_1": ["a", "b"], "text_2": ["c"]}, 400, "same length"),
        ("/rerank", {"query": "q", "texts": ["a"], "truncation_direction": "Left"}, 400, "truncation_direction"),
    ]:
        response = _post(url, path, body)
        error = response.json()["error"]
        assert response.status_code == status, (path, body, response.text)
        assert words in error["message"] and error["type"] == "invalid_request_error"


def test_concurrent_requests_are_batched(server):
    url, embedder, _, app = server
    texts = [f"text number {i}" for i in range(24)]
    before = app.state.scheduler.batches
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda t: _post(url, "/v1/embeddings", {"input": t}), texts))
    got = np.array([r.json()["data"][0]["embedding"] for r in responses], dtype=np.float32)
    np.testing.assert_allclose(got, embedder.encode(texts), atol=1e-5)
    assert app.state.scheduler.batches - before < len(texts)


DOCS = ["def add(a, b): return a + b", "the cat sat", "zzz"]


def test_rerank_endpoints(server):
    url, _, reranker, _ = server
    expected = reranker.score("add numbers", DOCS)
    documents = [DOCS[0], {"text": DOCS[1]}, {"text": DOCS[2]}]  # strings and Jina/Cohere objects mixed
    body = {"model": "tiny-rr", "query": "add numbers", "documents": documents, "top_n": 2, "return_documents": True}
    result = _post(url, "/v1/rerank", body).json()["results"]
    assert [r["index"] for r in result] == list(np.argsort(-expected)[:2])
    assert result[0]["relevance_score"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert result[0]["document"]["text"] == DOCS[result[0]["index"]]
    assert _post(url, "/v1/rerank", {"query": "q", "documents": []}).status_code == 400
    assert _post(url, "/v1/rerank", {"model": "tiny", "query": "q", "documents": ["a"]}).status_code == 404

    tei = _post(url, "/rerank", {"query": "add numbers", "texts": DOCS, "return_text": True}).json()
    assert [r["index"] for r in tei] == list(np.argsort(-expected))
    assert tei[0]["score"] == pytest.approx(float(expected.max()), abs=1e-5) and tei[0]["text"] == DOCS[tei[0]["index"]]
    raw = _post(url, "/rerank", {"query": "add numbers", "texts": DOCS, "raw_scores": True}).json()
    log_odds = np.log(expected / (1 - expected))
    assert raw[0]["score"] == pytest.approx(float(log_odds.max()), abs=1e-4)

    one_to_many = _post(url, "/v1/score", {"model": "tiny-rr", "text_1": "add numbers", "text_2": DOCS}).json()
    assert one_to_many["object"] == "list"
    np.testing.assert_allclose([d["score"] for d in one_to_many["data"]], expected, atol=1e-5)
    pairs = _post(url, "/v1/score", {"text_1": ["add numbers", "cats"], "text_2": DOCS[:2]}).json()["data"]
    assert pairs[1]["score"] == pytest.approx(float(reranker.score("cats", [DOCS[1]])[0]), abs=1e-5)

    long_doc = "word " * 400
    refused = _post(url, "/v1/rerank", {"query": "q", "documents": ["a", long_doc]})
    assert refused.status_code == 400 and "limit of 400" in refused.json()["error"]["message"]
    cut = _post(url, "/v1/rerank", {"query": "q", "documents": ["a", long_doc], "truncate": True}).json()
    assert cut["usage"]["total_tokens"] <= 2 * 400


class GatedEmbedder:
    """The real embedder, but every batch waits for ``gate`` and announces itself on ``started``: the test decides
    when each batch may run, so the order of events is deterministic."""

    def __init__(self, embedder: Embedder):
        self.inner = embedder
        self.gate, self.started = threading.Semaphore(0), threading.Semaphore(0)
        self.batches: list[list[list[int]]] = []

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def encode_token_ids(self, token_ids, **kwargs):
        self.started.release()
        assert self.gate.acquire(timeout=60)
        self.batches.append([list(ids) for ids in token_ids])
        return self.inner.encode_token_ids(token_ids, **kwargs)


def _wait_until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_small_request_completes_while_a_large_one_runs(models):
    from qwenkit.embed.serve import create_app

    embedder, _ = models
    gated = GatedEmbedder(embedder)
    app = create_app(gated, max_batch_tokens=64, model_name="tiny")
    large = [f"a large request's text {i:02d}" for i in range(30)]  # 26 tokens each: 2 per batch, 15 batches
    responses: dict[str, object] = {}
    with serve_in_background(app) as url:
        def send(name, inputs):
            responses[name] = _post(url, "/v1/embeddings", {"input": inputs})

        large_thread = threading.Thread(target=send, args=("large", large))
        large_thread.start()
        assert gated.started.acquire(timeout=60)  # the large request's first batch is running (held at the gate)
        small_thread = threading.Thread(target=send, args=("small", ["small one"]))
        small_thread.start()
        _wait_until(lambda: app.state.scheduler.queued_requests == 2)
        gated.gate.release()  # finish the first batch; the next one is the small request's
        assert gated.started.acquire(timeout=60)
        gated.gate.release()
        small_thread.join(timeout=60)
        assert not small_thread.is_alive() and large_thread.is_alive()
        assert gated.batches[1] == embedder.tokenize(["small one"])
        assert app.state.scheduler.queued_requests == 1
        gated.gate.release(100)
        large_thread.join(timeout=120)
    assert len(gated.batches) == 16  # 2 + small + 14 x 2: the large request's batches never take the small one
    np.testing.assert_allclose(responses["small"].json()["data"][0]["embedding"], embedder.encode("small one"),
                               atol=1e-5)
    got = [d["embedding"] for d in responses["large"].json()["data"]]
    np.testing.assert_allclose(got, embedder.encode(large), atol=1e-5)


def test_scheduler_packs_whole_small_requests_and_splits_large_ones():
    import asyncio

    from qwenkit.embed.serve import TokenBudgetScheduler, _Job

    scheduler = TokenBudgetScheduler(embedder=None, max_batch_tokens=40, max_batch=8)
    loop = asyncio.new_event_loop()
    try:
        def job(lengths, arrival):
            ids = [[1] * n for n in lengths]
            return _Job(ids, loop.create_future(), arrival, order=sorted(range(len(ids)), key=lambda i: -len(ids[i])))

        large, small_a, small_b = job([10] * 9, 0), job([5], 1), job([4, 3], 2)
        scheduler._jobs = [large, small_a, small_b]
        first = scheduler.next_batch()  # the two small requests together (widest 5 x 3 rows = 15 <= 40)
        assert [(j.arrival, i) for j, i in first] == [(1, 0), (2, 0), (2, 1)]
        second = scheduler.next_batch()  # then the large one alone, 4 rows of 10 tokens
        assert [(j.arrival, i) for j, i in second] == [(0, 0), (0, 1), (0, 2), (0, 3)]
        assert scheduler.next_batch() == []  # the large request is in flight: never in two running batches
        late = job([2], 3)
        scheduler._jobs.append(late)
        assert [j.arrival for j, _ in scheduler.next_batch()] == [3]  # a newcomer runs beside it at once
        scheduler.release(second)
        third = scheduler.next_batch()
        assert [i for _, i in third] == [4, 5, 6, 7]
        assert scheduler.next_batch() == []
        scheduler.release(third)
        assert [i for _, i in scheduler.next_batch()] == [8]
    finally:
        loop.close()


def test_two_concurrent_batches_give_the_same_embeddings(models):
    from qwenkit.embed.serve import create_app

    embedder, _ = models
    app = create_app(embedder, max_batch_tokens=64, concurrent_batches=2, model_name="tiny")
    texts = [f"text {i} " + "x" * (i % 9) for i in range(20)]
    with serve_in_background(app) as url, ThreadPoolExecutor(max_workers=3) as pool:
        large = pool.submit(_post, url, "/v1/embeddings", {"input": texts})
        smalls = list(pool.map(lambda t: _post(url, "/v1/embeddings", {"input": t}), texts[:4]))
        got = [d["embedding"] for d in large.result().json()["data"]]
    np.testing.assert_allclose(got, embedder.encode(texts), atol=1e-5)
    np.testing.assert_allclose([r.json()["data"][0]["embedding"] for r in smalls], embedder.encode(texts[:4]),
                               atol=1e-5)
    assert app.state.scheduler.batches > 1
