"""Every model call of a run goes through :class:`CallRunner`: a content-hash SQLite cache, limits, usage and cost.

The cache key is the sha256 of the canonical JSON of (backend identity, role, messages, parameters, seed, protocol
version). A finished call is committed to ``calls.sqlite`` (WAL journal) before its answer is used, so a killed run
resumes without repeating it, and since seeds are derived from content (never from order), answers do not depend on
how many calls run at once. Limits: a concurrency cap (a semaphore per role), token buckets for requests/s and
tokens/min, per-call timeouts and retries with ``Retry-After`` (inside :class:`qwenkit.lm.OpenAIChatBackend`), and
an optional budget in US dollars that stops the run cleanly before a call that would start past it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwenkit.roleplay.backends import Price, RateLimit


class BudgetExhausted(RuntimeError):
    """The run's cost budget is spent; finished calls are cached, so ``--resume`` with a larger budget continues."""


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def call_key(payload: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a call's full description (the cache key)."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def derived_seed(*parts: Any) -> int:
    """A 31-bit seed from content (run seed, dialogue id, round, role, ...), identical whatever the call order."""
    return int(hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()[:8], 16) & 0x7FFFFFFF


class CallCache:
    """A SQLite table ``calls(key, role, request, response, cost_usd)`` in WAL mode, safe to share across threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, role TEXT NOT NULL, "
                         "request TEXT NOT NULL, response TEXT NOT NULL, cost_usd REAL NOT NULL)")

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, role: str, request: Mapping[str, Any], response: Mapping[str, Any],
            cost_usd: float) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?)",
                             (key, role, canonical_json(request), canonical_json(response), cost_usd))

    def total_cost(self) -> float:
        with self._lock:
            return float(self._db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM calls").fetchone()[0])

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class TokenBucket:
    """``rate`` tokens per second refill a bucket of ``capacity``; ``acquire(n)`` waits until n are available.

    A request larger than the capacity waits for a full bucket and then takes it (never deadlocks).
    """

    def __init__(self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rate, self.capacity = rate, capacity
        self._clock, self._sleep = clock, sleep
        self._tokens, self._stamp = capacity, clock()
        self._lock = threading.Lock()

    def acquire(self, amount: float = 1.0) -> float:
        """Take ``amount`` tokens; returns the seconds waited."""
        amount = min(amount, self.capacity)
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= amount:
                    self._tokens -= amount
                    return waited
                wait = (amount - self._tokens) / self.rate
            self._sleep(wait)
            waited += wait


@dataclass
class RoleUsage:
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class RoleChannel:
    """How one role (player, simulator, judge) reaches its backend."""

    backend: Any
    identity: Mapping[str, Any]
    concurrency: int
    rate_limit: RateLimit = field(default_factory=RateLimit)
    price: Price = field(default_factory=Price)
    exclusive: bool = False
    """True for a local model: one call at a time whatever the concurrency (one model, one process)."""


def cost_usd(usage: Mapping[str, int], price: Price) -> float:
    """``prompt_tokens * input_per_mtok / 1e6 + completion_tokens * output_per_mtok / 1e6``."""
    return (usage.get("prompt_tokens", 0) * price.input_per_mtok
            + usage.get("completion_tokens", 0) * price.output_per_mtok) / 1e6


class CallRunner:
    """Cached, limited calls for every role; ``usage`` totals per role (cache hits counted apart)."""

    def __init__(self, cache: CallCache, channels: Mapping[str, RoleChannel], *, protocol_version: int,
                 budget_usd: float | None = None, on_call: Callable[[str], None] | None = None):
        self.cache, self.channels = cache, dict(channels)
        self.protocol_version, self.budget_usd = protocol_version, budget_usd
        self.on_call = on_call
        self.usage = {role: RoleUsage() for role in self.channels}
        self._usage_lock = threading.Lock()
        self._inflight: dict[str, threading.Lock] = {}
        self._inflight_lock = threading.Lock()
        self._gates = {role: threading.Semaphore(1 if c.exclusive else c.concurrency) for role, c in channels.items()}
        self._buckets: dict[str, list[tuple[str, TokenBucket]]] = {}
        for role, channel in self.channels.items():
            limit, buckets = channel.rate_limit, []
            if limit.requests_per_s:
                buckets.append(("requests", TokenBucket(limit.requests_per_s, max(1.0, limit.requests_per_s))))
            if limit.tokens_per_min:
                buckets.append(("tokens", TokenBucket(limit.tokens_per_min / 60.0, limit.tokens_per_min)))
            self._buckets[role] = buckets

    def call(self, role: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
             produce: Callable[[Any], Mapping[str, Any]]) -> dict[str, Any]:
        """The answer of ``produce(backend)`` for this call, from the cache when it was made before.

        ``produce`` returns ``{"text", "reasoning", "usage", "finish_reason", ...}`` (JSON-able); ``params`` must
        describe everything that changes the answer (sampling, seed, thinking settings, attempt number).
        """
        channel = self.channels[role]
        request = {"backend": dict(channel.identity), "role": role, "messages": [dict(m) for m in messages],
                   "params": dict(params), "protocol": self.protocol_version}
        key = call_key(request)
        with self._inflight_lock:
            same = self._inflight.setdefault(key, threading.Lock())
        with same:  # two identical calls at once (a shared calibration prompt): the second waits for the first
            return self._call_once(role, channel, key, request, messages, params, produce)

    def _call_once(self, role: str, channel: RoleChannel, key: str, request: Mapping[str, Any],
                   messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any],
                   produce: Callable[[Any], Mapping[str, Any]]) -> dict[str, Any]:
        cached = self.cache.get(key)
        if cached is not None:
            self._count(role, cached, cached=True)
            return cached
        if self.budget_usd is not None and self.cache.total_cost() >= self.budget_usd:
            raise BudgetExhausted(f"the budget of ${self.budget_usd:g} is spent (${self.cache.total_cost():.4f} in "
                                  f"{len(self.cache)} cached calls); rerun with --resume and a larger budget_usd")
        estimate = sum(len(str(m.get("content") or "")) for m in messages) / 4 + int(params.get("max_tokens", 0))
        with self._gates[role]:
            for kind, bucket in self._buckets[role]:
                bucket.acquire(1.0 if kind == "requests" else estimate)
            if self.on_call is not None:
                self.on_call(role)
            answer = dict(produce(channel.backend))
        answer["cost_usd"] = cost_usd(answer.get("usage", {}), channel.price)
        self.cache.put(key, role, request, answer, answer["cost_usd"])
        self._count(role, answer, cached=False)
        return answer

    def _count(self, role: str, answer: Mapping[str, Any], *, cached: bool) -> None:
        usage = answer.get("usage", {})
        with self._usage_lock:
            totals = self.usage[role]
            totals.calls += 1
            totals.cached += int(cached)
            totals.prompt_tokens += int(usage.get("prompt_tokens", 0))
            totals.completion_tokens += int(usage.get("completion_tokens", 0))
            totals.cost_usd += float(answer.get("cost_usd", 0.0))
