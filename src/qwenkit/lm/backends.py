"""Chat backends: one protocol for a local ``transformers`` model and any OpenAI-compatible HTTP server.

``backend.complete(messages, max_tokens=..., temperature=..., top_p=..., top_k=..., seed=..., stop=..., extra=...)``
returns a :class:`Completion` (``text`` = the answer, ``reasoning``, ``usage``, ``finish_reason``). ``extra`` carries
engine options: ``enable_thinking`` (sent as ``chat_template_kwargs.enable_thinking``), ``continue_final_message``
(continue the last assistant message, the prefill of the two-pass thinking budget), ``thinking_budget`` (sent under the
backend's ``budget_field``, for engines with their own budget), and ``body`` (raw fields merged into the request).

The HTTP backend retries connection errors, timeouts, 429 and 5xx with exponential backoff, honouring ``Retry-After``
(seconds or an HTTP date); other 4xx responses raise :class:`BackendError` at once with the server's message.
Reasoning comes from ``reasoning_content`` (vLLM, SGLang, qwenkit, DeepSeek) or ``reasoning`` (newer vLLM, Ollama-style
gateways), or is split out of inline ``<think>...</think>`` in the content.
"""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from qwenkit.core.errors import QwenkitError
from qwenkit.lm.chat import THINK_END, generation_prompt, render_chat, split_reasoning

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class BackendError(QwenkitError, RuntimeError):
    """A chat request failed for good (a 4xx other than 408/409/429, or retries exhausted); names the cause."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class Completion:
    text: str
    """The answer (content after the reasoning)."""
    reasoning: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    """``prompt_tokens``, ``completion_tokens`` and, when known, ``reasoning_tokens``."""
    finish_reason: str = "stop"
    raw: Any = None


@runtime_checkable
class ChatBackend(Protocol):
    name: str
    budget_field: str | None
    """Request field of the engine's own thinking budget (None: the engine has none; use the two-pass strategy)."""

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Completion: ...


class TransformersBackend:
    """A local causal LM behind the chat-backend protocol (rendered with its chat template, sampled with KV cache).

    For a thinking budget on a local model use :func:`qwenkit.infer.generate_chat` (exact, batched); this backend
    supports ``enable_thinking`` and ``continue_final_message``, so the two-pass strategy works through it as well.
    """

    budget_field = None

    def __init__(self, model, tokenizer, *, name: str = "local"):
        self.model, self.tokenizer, self.name = model, tokenizer, name

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Completion:
        from qwenkit.lm.sampling import SamplingParams, sample

        extra = dict(extra or {})
        if "thinking_budget" in extra:
            raise BackendError("the local backend has no server-side budget; use qwenkit.infer.generate_chat "
                               "(strategy 'logits' or 'two_pass')")
        if extra.get("continue_final_message"):
            prompt = render_chat(messages, tokenizer=self.tokenizer, continue_final_message=True)
            prefix = messages[-1].get("content") or ""
            thinking = prefix.lstrip().startswith("<think>") and THINK_END not in prefix
        else:
            prompt, thinking = generation_prompt(
                messages, tokenizer=self.tokenizer, enable_thinking=extra.get("enable_thinking", True)
            )
        vocab = self.tokenizer.get_vocab()
        stop_ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        stop_ids.update(vocab[t] for t in ("<|im_end|>", "<|endoftext|>") if t in vocab)
        params = SamplingParams(
            max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed,
            stop=list(stop or []), stop_token_ids=sorted(i for i in stop_ids if i is not None),
        )
        batch = sample(self.model, self.tokenizer, [prompt], params)
        ids = batch.completion_ids[0]
        cut = next((i for i, t in enumerate(ids) if t in stop_ids), len(ids))
        text = self.tokenizer.decode(ids[:cut], skip_special_tokens=False)
        for s in stop or []:
            if s in text:
                text = text[: text.find(s)]
        reasoning, content = split_reasoning("<think>\n" + text) if thinking else ("", text.strip("\n"))
        usage = {"prompt_tokens": len(batch.prompt_ids[0]), "completion_tokens": len(ids)}
        return Completion(content, reasoning, usage, batch.finish_reasons[0])


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, *, base_s: float, max_s: float, retry_after_s: float | None = None) -> float:
    """Wait before retry ``attempt`` (0-based): ``min(max_s, base_s * 2**attempt)``, or the server's ``Retry-After``."""
    if retry_after_s is not None:
        return min(max_s, retry_after_s)
    return min(max_s, base_s * (2**attempt))


class OpenAIChatBackend:
    """Any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, SGLang, llama.cpp, Ollama, qwenkit serve ...).

    The API key is read from the environment variable ``api_key_env`` (never passed around in configs); a server
    without authentication needs none. ``budget_field`` names the engine's own budget field when it has one:
    ``"thinking_token_budget"`` (vLLM), ``"thinking_budget"`` (qwenkit serve); ``hard_end_only`` says the engine forces
    only ``</think>`` (vLLM, SGLang) rather than Qwen's stop text.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        budget_field: str | None = None,
        hard_end_only: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        transport: Any = None,
    ):
        import httpx

        self.name = model
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.max_retries, self.backoff_base_s, self.backoff_max_s = max_retries, backoff_base_s, backoff_max_s
        self.budget_field, self.hard_end_only = budget_field, hard_end_only
        self._sleep = sleep
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)
        self.attempts = 0
        """Requests sent so far, retries included (for diagnostics and tests)."""

    def close(self) -> None:
        self._client.close()

    def request_body(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
        seed: int | None,
        stop: Sequence[str] | None,
        extra: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        extra = dict(extra or {})
        body: dict[str, Any] = {
            "model": self.model, "messages": [dict(m) for m in messages], "max_tokens": max_tokens,
            "temperature": temperature, "top_p": top_p,
        }
        if top_k:
            body["top_k"] = top_k
        if seed is not None:
            body["seed"] = seed
        if stop:
            body["stop"] = list(stop)
        if "enable_thinking" in extra:
            body["chat_template_kwargs"] = {"enable_thinking": bool(extra["enable_thinking"])}
        if extra.get("continue_final_message"):
            body.update(continue_final_message=True, add_generation_prompt=False)
        if extra.get("thinking_budget") is not None:
            if self.budget_field is None:
                raise BackendError(f"backend {self.name!r} has no budget_field; use the two_pass strategy or set "
                                   "budget_field (e.g. 'thinking_token_budget' for vLLM)")
            body[self.budget_field] = int(extra["thinking_budget"])
        body.update(extra.get("body") or {})
        return body

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST with retries (connection errors, timeouts, 408/409/429/5xx), honouring ``Retry-After``."""
        import httpx

        last_error = ""
        for attempt in range(self.max_retries + 1):
            self.attempts += 1
            retry_after = None
            try:
                response = self._client.post(path, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response.json()
                message = _error_message(response)
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(f"{self.base_url}{path} answered {response.status_code}: {message}",
                                       status=response.status_code)
                last_error = f"HTTP {response.status_code}: {message}"
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            if attempt < self.max_retries:
                self._sleep(backoff_delay(attempt, base_s=self.backoff_base_s, max_s=self.backoff_max_s,
                                          retry_after_s=retry_after))
        raise BackendError(f"{self.base_url}{path} failed after {self.max_retries + 1} attempts; last error: "
                           f"{last_error}")

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Completion:
        body = self.request_body(messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                 seed=seed, stop=stop, extra=extra)
        data = self.post("/chat/completions", body)
        return parse_chat_response(data)


def parse_chat_response(data: Mapping[str, Any]) -> Completion:
    """A :class:`Completion` from an OpenAI-style chat response (reasoning from a field or inline ``<think>``)."""
    try:
        choice = data["choices"][0]
        message = choice.get("message") or {}
    except (KeyError, IndexError, TypeError) as exc:
        raise BackendError(f"not a chat completion response (no choices[0].message): {str(data)[:200]}") from exc
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    if not reasoning and THINK_END in content:
        reasoning, content = split_reasoning(content)
    usage_data = data.get("usage") or {}
    usage = {k: int(usage_data[k]) for k in ("prompt_tokens", "completion_tokens") if k in usage_data}
    details = usage_data.get("completion_tokens_details") or {}
    if details.get("reasoning_tokens") is not None:
        usage["reasoning_tokens"] = int(details["reasoning_tokens"])
    return Completion(content, reasoning, usage, choice.get("finish_reason") or "stop", raw=data)


def _error_message(response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(data)[:300]
