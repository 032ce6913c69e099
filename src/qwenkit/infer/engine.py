"""The serving engine: iteration-level continuous batching with chunked prefill, cancellation and per-request sampling.

One worker thread owns the model and runs a loop of *steps* (Orca, Yu et al. 2022, iteration-level scheduling):

1. new requests are admitted, cancelled ones (client gone, :meth:`EngineRequest.cancel`) are dropped wherever they
   are (waiting, prefilling or decoding): a cancelled request frees its batch slot at the next step;
2. **prefill**: waiting prompts of at most ``prefill_chunk`` tokens are prefilled together (left-padded), up to
   ``prefill_budget`` prompt tokens per step; a longer prompt is prefilled alone, ``prefill_chunk`` tokens per step,
   so a long prompt never stalls the running decodes for its whole length. A prompt that starts with a prefix
   already prefilled (a shared system prompt) reuses that prefix's KV from the :class:`PrefixCache` and runs only
   the rest;
3. **decode**: one forward pass over every running request (one new token each), then the rows are sampled: rows
   with plain greedy settings (temperature 0, no penalties, bias, processors, budget or log-probs) by one batched
   ``argmax``, every other row on its own (penalties, ``logit_bias``, the thinking budget, temperature / top-k /
   top-p / min-p, its own seed); a row leaves the batch at once when it finishes. A row whose processing raises
   (e.g. a processor that masks every token) fails alone, not the batch.

The running batch keeps one KV cache (a transformers ``DynamicCache``), left-padded to the longest live row; rows
that leave are removed from it and padding columns no row needs are cut, so the cache follows the live requests,
not the longest request ever seen.

transformers' own ``ContinuousBatchingManager`` was not used: its per-request logits processors receive only the
scores and one int32 argument per token, with no per-request token history, which the thinking-budget state
machine, the penalties, ``logit_bias`` maps and test-time forcing processors need.
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from qwenkit.core.errors import ConfigError
from qwenkit.infer.budget import ThinkingBudgetProcessor
from qwenkit.infer.generate import ChatResult, _reply, chat_stop_token_ids
from qwenkit.infer.prefix_cache import PrefixCache
from qwenkit.lm.chat import ReasoningStreamParser
from qwenkit.lm.sampling import cache_argument_name


@dataclass
class EngineRequest:
    prompt_ids: list[int]
    thinking: bool
    max_tokens: int
    budget: int | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    top_logprobs: int | None = None
    """None: no log-probs; k >= 0: the chosen token's log-prob and the k most likely alternatives per token."""
    processors: tuple = ()
    """Extra ``(input_ids[1, n], scores[1, V]) -> scores`` processors, run before the thinking budget."""
    stream: bool = False
    split_reasoning: bool = True
    """Stream reasoning and content apart (chat); False streams the raw text as "content" (completions)."""
    index: int = 0
    """The choice index this request answers (``n`` > 1 submits one request per choice)."""
    loop: asyncio.AbstractEventLoop | None = None
    events: asyncio.Queue | None = None
    """Receives (index, "reasoning" | "content", text) pieces while streaming, then (index, "done", ChatResult) or
    (index, "error", message)."""
    logprob_token_ids: list[int] = field(default_factory=list)
    """Per generated token (with ``top_logprobs`` set): its id, recorded with its log-prob, so a stream can send
    both as the token is generated."""
    token_logprobs: list[float] = field(default_factory=list)
    """Per generated token: log-probability under the model's unmodified distribution (``log softmax`` at T=1)."""
    alternatives: list[list[tuple[int, float]]] = field(default_factory=list)
    """Per generated token: the ``top_logprobs`` most likely (id, log-prob) pairs of that distribution."""
    submitted_at: float = 0.0
    first_token_at: float | None = None
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def cancel(self) -> None:
        """Ask the engine to drop this request (its slot is freed at the next step)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def emit(self, event: tuple) -> None:
        if self.loop is not None and self.events is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.events.put_nowait, (self.index, *event))


class _RowStream:
    """Incremental detokenisation of one row: decoded text deltas (held back at a partial UTF-8 character or at a
    possible stop string), split into reasoning and content."""

    def __init__(self, tokenizer, request: EngineRequest):
        self.tokenizer, self.request = tokenizer, request
        self.ids: list[int] = []
        self.sent = 0
        self.parser = ReasoningStreamParser(in_reasoning=request.thinking)
        self.hold = max((len(s) for s in request.stop), default=1) - 1

    def push(self, token: int) -> None:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=False)
        if text.endswith("\ufffd"):
            return
        self._send(text[: max(self.sent, len(text) - self.hold)])

    def _send(self, text: str) -> None:
        delta, self.sent = text[self.sent :], max(self.sent, len(text))
        if delta and not self.request.split_reasoning:
            self.request.emit(("content", delta))
        elif delta:
            for kind, piece in self.parser.feed(delta):
                self.request.emit((kind, piece))

    def close(self, final_text: str) -> None:
        if len(final_text) > self.sent:
            self._send(final_text)
        if not self.request.split_reasoning:
            return
        for piece in self.parser.flush():
            self.request.emit(piece)


class _Row:
    """A request inside the engine: its ids, sampler state, budget processor and (while prefilling) its progress."""

    def __init__(self, engine: ContinuousEngine, request: EngineRequest):
        self.request = request
        self.ids: list[int] = list(request.prompt_ids)
        self.generated: list[int] = []
        self.prefilled = 0
        self.next_input: int | None = None
        self.stop_ids = engine.stop_ids | set(request.stop_token_ids)
        self.generator = None
        if request.seed is not None:
            self.generator = torch.Generator().manual_seed(request.seed % 2**64)
        self.budget = ThinkingBudgetProcessor(engine.tokenizer, [request.budget], stop_text=engine.stop_text,
                                              stop_token_ids=sorted(self.stop_ids)) if request.thinking else None
        self.stream = _RowStream(engine.tokenizer, request) if request.stream else None
        self.counts: dict[int, int] = {}
        self.finish_reason: str | None = None
        self.tokenizer = engine.tokenizer
        self.cache = None
        self.max_stop_chars = max((len(s) for s in request.stop), default=0)
        self.plain_greedy = (request.temperature == 0 and self.budget is None and not request.processors
                             and not request.logit_bias and request.top_logprobs is None
                             and request.repetition_penalty == 1.0 and not request.presence_penalty
                             and not request.frequency_penalty)
        """True when the next token is just ``argmax`` of the raw logits, so the row can be sampled in a batch."""

    @property
    def position(self) -> int:
        """Tokens of this row already in the KV cache."""
        return len(self.ids) - (1 if self.next_input is not None else 0)

    def process_and_sample(self, logits: torch.Tensor) -> int:
        """Apply this request's processors to one row of next-token logits (shape [V]) and draw the next token."""
        request = self.request
        raw = logits.float()
        if request.top_logprobs is not None:
            logp = torch.log_softmax(raw, dim=-1)
        scores = raw.clone()
        if request.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(self.ids)), dtype=torch.long)
            picked = scores[seen]
            scores[seen] = torch.where(picked > 0, picked / request.repetition_penalty,
                                       picked * request.repetition_penalty)
        if self.counts and (request.presence_penalty or request.frequency_penalty):
            ids = torch.tensor(list(self.counts), dtype=torch.long)
            counts = torch.tensor(list(self.counts.values()), dtype=scores.dtype)
            scores[ids] -= request.frequency_penalty * counts + request.presence_penalty
        if request.logit_bias:
            ids = torch.tensor(list(request.logit_bias), dtype=torch.long)
            scores[ids] += torch.tensor(list(request.logit_bias.values()), dtype=scores.dtype)
        if request.processors or self.budget is not None:
            history = torch.tensor([self.ids], dtype=torch.long)
            batch = scores[None]
            for processor in request.processors:
                batch = processor(history, batch)
            if self.budget is not None:
                batch = self.budget(history, batch)
            scores = batch[0]
        token = sample_token(scores, request.temperature, request.top_k, request.top_p, request.min_p,
                             self.generator)
        if request.top_logprobs is not None:
            if request.top_logprobs:
                values, ids = torch.topk(logp, request.top_logprobs)
                request.alternatives.append(list(zip(ids.tolist(), values.tolist(), strict=True)))
            request.token_logprobs.append(float(logp[token]))
            request.logprob_token_ids.append(token)
        return token

    def accept(self, token: int) -> bool:
        """Record a sampled token; True when the request is finished (stop token, stop string or max_tokens)."""
        if self.request.first_token_at is None:
            self.request.first_token_at = time.monotonic()
        self.generated.append(token)
        self.ids.append(token)
        self.counts[token] = self.counts.get(token, 0) + 1
        if token in self.stop_ids:
            self.finish_reason = "stop"
            return True
        if self.stream is not None:
            self.stream.push(token)
        if self.max_stop_chars:
            tail = self.tokenizer.decode(self.generated[-(self.max_stop_chars + 8) :], skip_special_tokens=False)
            if any(s in tail for s in self.request.stop):
                self.finish_reason = "stop"
                return True
        if len(self.generated) >= self.request.max_tokens:
            self.finish_reason = "length"
            return True
        self.next_input = token
        return False

    def result(self) -> ChatResult:
        request = self.request
        if self.budget is not None:
            self.budget.finalize([self.generated])
            state = self.budget.rows[0]
            thinking_tokens, budget_hit = state.thinking_tokens or 0, state.budget_hit
        else:
            thinking_tokens, budget_hit = 0, False
        reasoning, content = _reply(self.tokenizer, self.generated, request.thinking, request.stop, self.stop_ids)
        return ChatResult(
            reasoning=reasoning, content=content, thinking_tokens=thinking_tokens, budget_hit=budget_hit,
            finish_reason=self.finish_reason or "length", passes=1, token_ids=list(self.generated),
            strategy="logits", thinking=request.thinking,
            usage={"prompt_tokens": len(request.prompt_ids), "completion_tokens": len(self.generated)},
        )


def sample_token(scores: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
                 generator: torch.Generator | None = None) -> int:
    """Draw one token from ``softmax(scores / T)`` restricted by top-k, top-p and min-p; ``T = 0`` is greedy.

    Numerically safe for any ``T > 0``: the distribution is ``softmax((z - max z) / T)`` in float64, so a tiny ``T``
    tends to the exact limit (uniform over the maximal logits) instead of overflowing. top-p keeps the smallest
    prefix of the sorted distribution whose mass reaches ``top_p`` and always the most likely token; min-p (Nguyen et
    al. 2024, eq. 1) drops tokens with ``p < min_p * max p``.
    """
    finite = torch.isfinite(scores)
    if not bool(finite.any()):
        raise ValueError("every token was masked out (all logits are -inf)")
    if temperature == 0:
        return int(scores.argmax())
    z = scores.double()
    z = (z - z[finite].max()) / temperature
    z = torch.nan_to_num(z, nan=-math.inf, neginf=-math.inf)
    probs = torch.softmax(z, dim=-1)
    if top_k and top_k < probs.shape[-1]:
        kth = torch.topk(probs, top_k).values[-1]
        probs = torch.where(probs >= kth, probs, 0.0)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs
        drop = before >= top_p * probs.sum()
        drop[0] = False
        probs = probs.scatter(-1, order, torch.where(drop, 0.0, sorted_probs))
    if min_p > 0.0:
        probs = torch.where(probs >= min_p * probs.max(), probs, 0.0)
    return int(torch.multinomial(probs, 1, generator=generator))


class _Batch:
    """Rows sharing one left-padded KV cache: ``mask[b, j] = 1`` where column ``j`` holds a real token of row ``b``."""

    def __init__(self, rows: list[_Row], cache, mask: torch.Tensor):
        self.rows, self.cache, self.mask = rows, cache, mask

    def layers(self):
        return self.cache.layers

    def extend(self, other: _Batch) -> None:
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.layers(), other.layers(), strict=True):
            mine.keys = torch.cat([_pad_left(mine.keys, width), _pad_left(theirs.keys, width)], dim=0)
            mine.values = torch.cat([_pad_left(mine.values, width), _pad_left(theirs.values, width)], dim=0)
        self.mask = torch.cat([_pad_left(self.mask, width), _pad_left(other.mask, width)], dim=0)
        self.rows.extend(other.rows)

    def keep(self, keep: list[int]) -> None:
        index = torch.tensor(keep, dtype=torch.long)
        self.rows = [self.rows[i] for i in keep]
        mask = self.mask[index]
        used = torch.nonzero(mask.any(0)).flatten()
        start = int(used[0]) if used.numel() else mask.shape[1]
        self.mask = mask[:, start:]
        for layer in self.layers():
            layer.keys = layer.keys[index][..., start:, :]
            layer.values = layer.values[index][..., start:, :]


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Pad the sequence axis (-2 for a KV tensor [B, H, T, D], -1 for a mask [B, T]) on the left to ``width``."""
    axis = -1 if tensor.dim() == 2 else -2
    missing = width - tensor.shape[axis]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=axis)


class EngineStats:
    """Counters for ``/metrics``."""

    def __init__(self):
        self.requests = 0
        self.finished = 0
        self.cancelled = 0
        self.failed = 0
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.steps = 0
        self.step_seconds = 0.0
        self.running = 0
        self.waiting = 0
        self.largest_batch = 0
        self.ttft_seconds: list[float] = []


class ContinuousEngine:
    """Owns a model and tokenizer; :meth:`submit` queues a request, :meth:`start`/:meth:`stop` run the worker.

    ``max_batch_size``: most requests decoding together; ``prefill_chunk``: the longest prompt prefilled in one
    step (longer ones are prefilled alone, this many tokens per step); ``prefill_budget``: prompt tokens of short
    prompts prefilled together in one step (at least ``prefill_chunk``; a prompt of at most ``prefill_chunk`` tokens
    is always admitted whole); ``batch_wait_s``: when idle, how long the first request waits for others to arrive
    before the first step; ``prefix_cache_tokens``: prompt-prefix KV kept for reuse (0: no prefix cache), matched
    in blocks of ``prefix_block_size`` tokens.
    """

    def __init__(self, model, tokenizer, *, max_batch_size: int = 32, prefill_chunk: int = 256,
                 prefill_budget: int = 2048, batch_wait_s: float = 0.0, stop_text: str | None = None,
                 prefix_cache_tokens: int = 4096, prefix_block_size: int = 16):
        if max_batch_size < 1:
            raise ConfigError(f"--max-batch-size must be >= 1, got {max_batch_size}")
        if prefill_chunk < 1:
            raise ConfigError(f"--prefill-chunk must be >= 1, got {prefill_chunk}")
        if prefill_budget < 1:
            raise ConfigError(f"--prefill-budget must be >= 1, got {prefill_budget}")
        if prefix_cache_tokens < 0:
            raise ConfigError(f"--prefix-cache-tokens must be >= 0 (0 switches the cache off), got "
                              f"{prefix_cache_tokens}")
        if prefix_block_size < 1:
            raise ConfigError(f"prefix_block_size must be >= 1, got {prefix_block_size}")
        self.prefix_cache = PrefixCache(prefix_cache_tokens, prefix_block_size)
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size, self.prefill_chunk, self.batch_wait_s = max_batch_size, prefill_chunk, batch_wait_s
        self.prefill_budget = max(prefill_budget, prefill_chunk)
        self.stop_text = stop_text
        self.stop_ids = set(chat_stop_token_ids(tokenizer))
        self.device = next(model.parameters()).device
        self.cache_kwarg = cache_argument_name(model)
        self.extra_kwargs = {"output_router_logits": False} if getattr(model.config, "output_router_logits",
                                                                        False) else {}
        layers = self._new_cache().layers
        if layers and any(type(layer).__name__ != "DynamicLayer" for layer in layers):
            raise ConfigError("the continuous engine needs full-attention KV layers; this model's cache has "
                             f"{sorted({type(layer).__name__ for layer in layers})}")
        self.stats = EngineStats()
        self._queue: queue.Queue[EngineRequest | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._waiting: deque[_Row] = deque()
        self._prefilling: _Row | None = None
        self._batch: _Batch | None = None
        self._stopping = False

    # the public side -------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._work, name="qwenkit-infer-engine", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping = True
            self._queue.put(None)
            self._thread.join(timeout=60)
            self._thread = None

    def submit(self, request: EngineRequest) -> None:
        request.submitted_at = time.monotonic()
        self.stats.requests += 1
        self.stats.prompt_tokens += len(request.prompt_ids)
        self._queue.put(request)

    # the worker ------------------------------------------------------------------------------------------------
    def _idle(self) -> bool:
        return not self._waiting and self._prefilling is None and self._batch is None

    def _admit(self) -> None:
        block = self._idle()
        while True:
            try:
                item = self._queue.get(timeout=None) if block else self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._stopping = True
                return
            if block and self.batch_wait_s > 0:
                time.sleep(self.batch_wait_s)
            block = False
            self._waiting.append(_Row(self, item))

    def _work(self) -> None:
        with torch.inference_mode():
            while not self._stopping:
                self._admit()
                if self._stopping:
                    break
                started = time.perf_counter()
                try:
                    self._step()
                except Exception as exc:  # a failed step must answer its requests, not hang them
                    self._fail_all(f"{type(exc).__name__}: {exc}")
                self.stats.steps += 1
                self.stats.step_seconds += time.perf_counter() - started
            self._fail_all("the server is shutting down")

    def _fail_all(self, message: str) -> None:
        rows = list(self._waiting) + ([self._prefilling] if self._prefilling else [])
        rows += self._batch.rows if self._batch else []
        for row in rows:
            self.stats.failed += 1
            row.request.emit(("error", message))
        self._waiting.clear()
        self._prefilling, self._batch = None, None
        self._update_gauges()

    def _update_gauges(self) -> None:
        self.stats.running = len(self._batch.rows) if self._batch else 0
        self.stats.waiting = len(self._waiting) + (1 if self._prefilling else 0)

    def _drop_cancelled(self) -> None:
        for row in [r for r in self._waiting if r.request.cancelled]:
            self._waiting.remove(row)
            self.stats.cancelled += 1
        if self._prefilling is not None and self._prefilling.request.cancelled:
            self._prefilling = None
            self.stats.cancelled += 1
        if self._batch is not None:
            keep = [i for i, r in enumerate(self._batch.rows) if not r.request.cancelled]
            self.stats.cancelled += len(self._batch.rows) - len(keep)
            self._remove_from_batch(keep)

    def _remove_from_batch(self, keep: list[int]) -> None:
        if self._batch is None or len(keep) == len(self._batch.rows):
            return
        if keep:
            self._batch.keep(keep)
        else:
            self._batch = None

    def _step(self) -> None:
        self._drop_cancelled()
        self._prefill()
        self._decode()
        self._update_gauges()

    def _room(self) -> int:
        running = len(self._batch.rows) if self._batch else 0
        return self.max_batch_size - running

    def _new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), use_cache=True, logits_to_keep=1,
                         **{self.cache_kwarg: cache}, **self.extra_kwargs)
        return out.logits[:, -1, :].float().cpu()

    def _prefill(self) -> None:
        """Continue a long prompt by ``prefill_chunk`` tokens, or prefill short prompts together."""
        if self._prefilling is None:
            if not self._waiting or self._room() <= 0:
                return
            head = self._waiting[0]
            if len(head.ids) > self.prefill_chunk:
                self._prefilling = row = self._waiting.popleft()
                entry, reused = self.prefix_cache.lookup(row.ids)
                row.cache = self._new_cache()
                if entry is not None:
                    for index, layer in enumerate(row.cache.layers):
                        layer.update(entry.keys[index][..., :reused, :], entry.values[index][..., :reused, :])
                    row.prefilled = reused
            else:
                group, tokens = [], 0
                while (self._waiting and len(group) < self._room()
                       and len(self._waiting[0].ids) <= self.prefill_chunk
                       and tokens + len(self._waiting[0].ids) <= self.prefill_budget):
                    row = self._waiting.popleft()
                    group.append(row)
                    tokens += len(row.ids)
                self._prefill_group(group)
                return
        row = self._prefilling
        chunk = row.ids[row.prefilled : row.prefilled + self.prefill_chunk]
        start = row.prefilled
        row.prefilled += len(chunk)
        mask = torch.ones((1, row.prefilled), dtype=torch.long)
        positions = torch.arange(start, row.prefilled)[None]
        logits = self._forward(torch.tensor([chunk]), mask, positions, row.cache)
        if row.prefilled == len(row.ids):
            self._prefilling = None
            batch = _Batch([row], row.cache, mask)
            self._store_prefixes(batch)
            self._join(batch, logits)

    def _prefill_group(self, group: list[_Row]) -> None:
        """One forward pass over the prompts of ``group``, each row minus the prefix the prefix cache holds.

        The cache columns are ``[reused prefixes | new tokens]``, each part left-padded to its longest row, so row
        ``b`` is ``[pad, its prefix, pad, the rest of its prompt]`` with ``mask[b]`` 1 on its real tokens; positions
        count real tokens only, so they equal the unpadded prompt's.
        """
        hits = [self.prefix_cache.lookup(row.ids) for row in group]
        reused = [length for _, length in hits]
        past_width = max(reused)
        width = max(len(row.ids) - n for row, n in zip(group, reused, strict=True))
        ids = torch.zeros((len(group), width), dtype=torch.long)
        mask = torch.zeros((len(group), past_width + width), dtype=torch.long)
        positions = torch.zeros((len(group), width), dtype=torch.long)
        for b, (row, n) in enumerate(zip(group, reused, strict=True)):
            rest = len(row.ids) - n
            ids[b, width - rest :] = torch.tensor(row.ids[n:])
            mask[b, past_width - n : past_width] = 1
            mask[b, past_width + width - rest :] = 1
            positions[b, width - rest :] = torch.arange(n, len(row.ids))
            row.prefilled = len(row.ids)
        cache = self._new_cache()
        if past_width:
            self._fill_past(cache, hits, past_width)
        logits = self._forward(ids, mask, positions, cache)
        batch = _Batch(group, cache, mask)
        self._store_prefixes(batch)
        self._join(batch, logits)

    def _fill_past(self, cache, hits: list, past_width: int) -> None:
        """Write each row's reused prefix KV, right-aligned in ``past_width`` columns, into an empty ``cache``."""
        template = next(entry for entry, _ in hits if entry is not None)
        for index, layer in enumerate(cache.layers):
            heads, dim = template.keys[index].shape[1], template.keys[index].shape[-1]
            shape = (len(hits), heads, past_width, dim)
            keys = template.keys[index].new_zeros(shape)
            values = template.values[index].new_zeros(shape)
            for b, (entry, n) in enumerate(hits):
                if entry is not None:
                    keys[b, :, past_width - n :] = entry.keys[index][0, :, :n]
                    values[b, :, past_width - n :] = entry.values[index][0, :, :n]
            layer.update(keys, values)

    def _store_prefixes(self, batch: _Batch) -> None:
        """Give the prefix cache the whole-block prompt prefixes of freshly prefilled rows that it does not hold."""
        for b, row in enumerate(batch.rows):
            length = self.prefix_cache.storable_length(row.ids)
            if not length:
                continue
            columns = torch.nonzero(batch.mask[b]).flatten()[:length]
            layers = batch.layers()
            self.prefix_cache.insert(row.ids[:length], [layer.keys[b : b + 1, :, columns] for layer in layers],
                                     [layer.values[b : b + 1, :, columns] for layer in layers])

    def _join(self, batch: _Batch, logits: torch.Tensor) -> None:
        """Sample the first token of freshly prefilled rows; the unfinished ones join the running batch."""
        keep = self._advance_all(batch.rows, logits)
        if not keep:
            return
        batch.keep(keep)
        if self._batch is None:
            self._batch = batch
        else:
            self._batch.extend(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(self._batch.rows))

    def _advance_all(self, rows: list[_Row], logits: torch.Tensor) -> list[int]:
        """Sample every row's next token (``logits[b]`` is row ``b``'s); the indices of the rows still running.

        Plain greedy rows take one batched ``argmax`` (the same first maximal index ``sample_token`` picks); the
        others are processed one by one. A row whose processing raises is answered with an error on its own.
        """
        greedy = [b for b, row in enumerate(rows) if row.plain_greedy and not row.request.cancelled]
        tokens: dict[int, int] = {}
        if greedy:
            tokens = dict(zip(greedy, logits[greedy].argmax(-1).tolist(), strict=True))
        keep = []
        for b, row in enumerate(rows):
            if row.request.cancelled:
                self.stats.cancelled += 1
                continue
            try:
                finished = self._advance(row, tokens[b] if b in tokens else row.process_and_sample(logits[b]))
            except Exception as exc:  # this request's own processing failed: answer it, keep its neighbours
                self.stats.failed += 1
                row.request.emit(("error", f"{type(exc).__name__}: {exc}"))
                continue
            if not finished:
                keep.append(b)
        return keep

    def _advance(self, row: _Row, token: int) -> bool:
        """Record a sampled token, and answer the request if it finished; True when it did."""
        self.stats.generated_tokens += 1
        if len(row.generated) == 0:
            self.stats.ttft_seconds.append(time.monotonic() - row.request.submitted_at)
            del self.stats.ttft_seconds[:-1000]
        if not row.accept(token):
            return False
        result = row.result()
        if row.stream is not None:
            row.stream.close(_stream_text(self.tokenizer, result, row.stop_ids, row.request.stop))
        self.stats.finished += 1
        row.request.emit(("done", result))
        return True

    def _decode(self) -> None:
        batch = self._batch
        if batch is None:
            return
        rows = [r for r in batch.rows if r.next_input is not None]
        if len(rows) != len(batch.rows):
            raise RuntimeError("a running row has no pending token")
        ids = torch.tensor([[r.next_input] for r in rows], dtype=torch.long)
        positions = torch.tensor([[r.position] for r in rows], dtype=torch.long)
        batch.mask = torch.cat([batch.mask, torch.ones((len(rows), 1), dtype=batch.mask.dtype)], dim=1)
        logits = self._forward(ids, batch.mask, positions, batch.cache)
        for row in rows:
            row.next_input = None
        self._remove_from_batch(self._advance_all(rows, logits))


def _stream_text(tokenizer, result: ChatResult, stop_ids: set[int], stop: tuple[str, ...]) -> str:
    """The reply text as streamed (before the reasoning split): decoded ids up to the first stop token or string."""
    ids = result.token_ids
    cut = next((i for i, t in enumerate(ids) if t in stop_ids), len(ids))
    text = tokenizer.decode(ids[:cut], skip_special_tokens=False)
    for s in stop:
        if s in text:
            text = text[: text.find(s)]
    return text


BatchEngine = ContinuousEngine
"""The engine's earlier name, kept for callers of ``qwenkit.infer.engine.BatchEngine``."""
