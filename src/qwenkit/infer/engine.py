"""Batched generation for the server: concurrent requests are collected and generated together in one batch.

One worker thread owns the model. It waits for a request, then gathers whatever else arrives within ``batch_wait_s``
(up to ``max_batch_size``), groups the requests whose sampling settings can share a batch (temperature, top-p, top-k,
seed, stop strings), and runs each group through :func:`qwenkit.infer.generate.generate_ids` with per-row thinking
budgets and per-row ``max_tokens``. Tokens are streamed back to each request's asyncio queue as they are sampled.
Requests arriving while a batch runs wait for the next one (static batching, no continuous batching).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from qwenkit.infer.generate import ChatResult, chat_stop_token_ids, generate_ids
from qwenkit.lm.chat import ReasoningStreamParser


@dataclass
class EngineRequest:
    prompt_ids: list[int]
    thinking: bool
    max_tokens: int
    budget: int | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    loop: asyncio.AbstractEventLoop | None = None
    events: asyncio.Queue | None = None
    """Receives ("reasoning" | "content", text) pieces while streaming, then ("done", ChatResult) or ("error", str)."""
    _stream: Any = field(default=None, repr=False)

    def group_key(self) -> tuple:
        return (self.temperature, self.top_p, self.top_k, self.seed, self.stop)

    def emit(self, event: tuple) -> None:
        if self.loop is not None and self.events is not None:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class _RowStream:
    """Incremental detokenisation of one row: decoded text deltas (held back at a partial UTF-8 character or at a
    possible stop string), split into reasoning and content."""

    def __init__(self, tokenizer, request: EngineRequest, stop_ids: set[int]):
        self.tokenizer, self.request, self.stop_ids = tokenizer, request, stop_ids
        self.ids: list[int] = []
        self.sent = 0
        self.ended = False
        self.parser = ReasoningStreamParser(in_reasoning=request.thinking)
        self.hold = max((len(s) for s in request.stop), default=1) - 1

    def push(self, token: int) -> None:
        if self.ended or token in self.stop_ids or len(self.ids) >= self.request.max_tokens:
            self.ended = True
            return
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        if text.endswith("\ufffd"):
            return
        cut = min((text.find(s) for s in self.request.stop if s in text), default=-1)
        if cut >= 0:
            self._send(text[:cut])
            self.ended = True
            return
        self._send(text[: max(self.sent, len(text) - self.hold)])

    def _send(self, text: str) -> None:
        delta, self.sent = text[self.sent :], max(self.sent, len(text))
        if delta:
            for kind, piece in self.parser.feed(delta):
                self.request.emit((kind, piece))

    def close(self, final_text: str) -> None:
        if len(final_text) > self.sent:
            self._send(final_text)
        for piece in self.parser.flush():
            self.request.emit(piece)
        self.ended = True


class BatchEngine:
    """Owns a model and tokenizer; :meth:`submit` queues a request, :meth:`start`/:meth:`stop` run the worker."""

    def __init__(self, model, tokenizer, *, max_batch_size: int = 32, batch_wait_s: float = 0.01,
                 stop_text: str | None = None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size, self.batch_wait_s, self.stop_text = max_batch_size, batch_wait_s, stop_text
        self.stop_ids = set(chat_stop_token_ids(tokenizer))
        self._queue: queue.Queue[EngineRequest | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.batches_run = 0
        self.largest_batch = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="qwenkit-infer-engine", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=60)
            self._thread = None

    def submit(self, request: EngineRequest) -> None:
        self._queue.put(request)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            pending = [first]
            while len(pending) < self.max_batch_size:
                try:
                    item = self._queue.get(timeout=self.batch_wait_s)
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                pending.append(item)
            groups: dict[tuple, list[EngineRequest]] = {}
            for request in pending:
                groups.setdefault(request.group_key(), []).append(request)
            for group in groups.values():
                self._run(group)

    def _run(self, group: list[EngineRequest]) -> None:
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(group))
        first = group[0]
        params = {"temperature": first.temperature, "top_p": first.top_p, "top_k": first.top_k, "seed": first.seed,
                  "stop": list(first.stop)}
        streams = {i: _RowStream(self.tokenizer, r, self.stop_ids) for i, r in enumerate(group) if r.stream}
        try:
            results = generate_ids(
                self.model, self.tokenizer, [r.prompt_ids for r in group], [r.thinking for r in group],
                [r.budget for r in group], [r.max_tokens for r in group], self.stop_text, params,
                on_token=(lambda row, token: streams[row].push(token) if row in streams else None) if streams else None,
            )
        except Exception as exc:  # a failed batch must answer its requests, not hang them
            for request in group:
                request.emit(("error", f"{type(exc).__name__}: {exc}"))
            return
        for i, (request, result) in enumerate(zip(group, results, strict=True)):
            if i in streams:
                streams[i].close(_stream_text(self.tokenizer, result, self.stop_ids, request.stop))
            request.emit(("done", result))


def _stream_text(tokenizer, result: ChatResult, stop_ids: set[int], stop: tuple[str, ...]) -> str:
    """The reply text as streamed (before the reasoning split): decoded ids up to the first stop token or string."""
    ids = result.token_ids
    cut = next((i for i, t in enumerate(ids) if t in stop_ids), len(ids))
    text = tokenizer.decode(ids[:cut], skip_special_tokens=False)
    for s in stop:
        if s in text:
            text = text[: text.find(s)]
    return text
