"""An OpenAI-compatible server (FastAPI) on :class:`qwenkit.infer.engine.ContinuousEngine`.

Routes: ``/v1/chat/completions`` and ``/v1/completions`` (streamed or not), ``/v1/models``, ``/tokenize``, ``/metrics``
(Prometheus text), ``/health``.

Request fields beyond OpenAI's: ``chat_template_kwargs.enable_thinking`` (Qwen3's hard switch, as vLLM/SGLang take
it), ``thinking_budget`` (exact: Qwen's stop text forced after N thinking tokens), ``top_k``, ``min_p``,
``repetition_penalty``, ``stop_token_ids`` and vLLM's ``continue_final_message``/``add_generation_prompt``.
``response_format`` (``json_object``, ``json_schema``) and a forced ``tool_choice`` (``"required"``, a named function)
are enforced by constrained decoding (:mod:`qwenkit.infer.constrained`, llguidance). ``logprobs`` work streamed and
not. Responses carry ``reasoning_content`` next to ``content`` (``delta.reasoning_content`` when streaming) and
``usage.completion_tokens_details.reasoning_tokens``.

The boundary: the body is read up to ``max_request_bytes`` (413 beyond), parsed with a nesting limit, checked for
lone surrogates, and validated strictly (no type coercion: ``"10"`` is not an int, ``"yes"`` is not a bool); any
field this server does not implement is refused with a 400 that names it. Rendering and tokenizing run in a worker
thread, never on the event loop; prompts longer than ``max_prompt_tokens`` are refused. Every bad request gets an
OpenAI-shaped error ``{"error": {"message", "type", "param", "code"}}`` with a 4xx status.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qwenkit.core.errors import ConfigError
from qwenkit.infer.constrained import GrammarCompiler, SchemaError, check_schema
from qwenkit.infer.engine import ContinuousEngine, EngineRequest, _stream_text
from qwenkit.infer.tools import may_start_tool_call, parse_tool_calls
from qwenkit.lm.chat import THINK_END, THINK_START, generation_prompt, render_chat

MAX_JSON_DEPTH = 32
DISCONNECT_CHECK_S = 0.1
SEED_RANGE = (-(2**63), 2**64 - 1)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: str | None = None


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        content = self.content
        if isinstance(content, list):
            if any(part.type != "text" for part in content):
                raise ValueError("only text content parts are supported")
            content = "".join(part.text or "" for part in content)
        message: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": content}
        if self.reasoning_content is not None:
            message["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


class FunctionSpec(_Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSpec(_Strict):
    type: Literal["function"]
    function: FunctionSpec

    def as_dict(self) -> dict[str, Any]:
        return {"type": "function", "function": self.function.model_dump(exclude_none=True)}


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class ChatTemplateKwargs(_Strict):
    enable_thinking: bool | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class SamplingFields(_Strict):
    """Fields shared by chat and text completions."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    logit_bias: dict[str, float] | None = None
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=16)
    user: str | None = None
    """OpenAI's end-user identifier: accepted and not used (it only labels requests)."""


class JsonSchemaFormat(_Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None
    """Accepted; the schema is always enforced (constrained decoding), strict or not."""


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def schema_or_none(self) -> dict[str, Any] | None:
        """The JSON schema to enforce (``json_object``: any object); None for ``text``."""
        if self.type == "json_schema":
            if self.json_schema is None:
                raise APIError(400, "response_format.type 'json_schema' needs response_format.json_schema "
                                    "({'name': ..., 'schema': {...}})", param="response_format.json_schema")
            return self.json_schema.schema_
        if self.json_schema is not None:
            raise APIError(400, f"response_format.json_schema is only allowed with type 'json_schema', not "
                                f"{self.type!r}", param="response_format.json_schema")
        return {"type": "object"} if self.type == "json_object" else None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    chat_template_kwargs: ChatTemplateKwargs = Field(default_factory=ChatTemplateKwargs)
    thinking_budget: int | None = Field(None, ge=0)
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    """"auto" (the default with tools) parses Qwen3's ``<tool_call>`` blocks into ``tool_calls``; "none" renders the
    tools but returns the text as it is; "required" or ``{"type": "function", "function": {"name": ...}}`` force
    one call (of any tool, or of that one) by constrained decoding, its arguments following the tool's schema."""
    response_format: ResponseFormat | None = None
    parallel_tool_calls: bool | None = None
    """True/None: every parsed call is returned. False needs a forced ``tool_choice``, whose grammar makes exactly
    one call; with "auto" the model may write several, which this server does not cut."""

    def parses_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    def forced_tools(self) -> list[dict[str, Any]] | None:
        """The tools one of which must be called (``tool_choice`` "required" or named), else None."""
        if self.tool_choice in (None, "auto", "none"):
            return None
        if not self.tools:
            raise APIError(400, "tool_choice forces a tool call but the request has no tools", param="tool_choice")
        tools = [t.as_dict() for t in self.tools]
        if self.tool_choice == "required":
            return tools
        named = [t for t in tools if t["function"]["name"] == self.tool_choice.function.name]
        if not named:
            raise APIError(400, f"tool_choice names {self.tool_choice.function.name!r}, which is not in tools",
                           param="tool_choice.function.name")
        return named


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    """A text, token ids, or a list of either (a batch: choice ``p * n + j`` answers prompt ``p``)."""
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    """Prepend each prompt's text to its choices (as OpenAI); with ``logprobs`` it is refused (prompt log-probs are
    not computed)."""


class TokenizeRequest(_Strict):
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_generation_prompt: bool = True
    chat_template_kwargs: ChatTemplateKwargs = Field(default_factory=ChatTemplateKwargs)


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _field_path(loc: tuple) -> str:
    """``("stop", "list[str]", 0)`` -> ``"stop.0"``: the request path, without pydantic's union-member tags."""
    parts = [str(p) for p in loc if isinstance(p, int) or ("[" not in p and p not in _TYPE_TAGS)]
    return ".".join(parts)


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "dict", "list", "literal"}


def _validation_error(exc: ValidationError) -> APIError:
    errors = exc.errors()
    unsupported = [e for e in errors if e["type"] == "extra_forbidden"]
    if unsupported:
        path = _field_path(unsupported[0]["loc"])
        return APIError(400, f"field {path!r} is not supported by this server; remove it (see docs/infer.md for the "
                             "supported fields)", param=path, code="unsupported_field")
    first = errors[0]
    problems = "; ".join(f"{_field_path(e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])
    return APIError(400, f"invalid request: {problems}", param=_field_path(first["loc"]) or None,
                    code="invalid_value")


def _check_json(value: Any) -> None:
    """Refuse nesting deeper than ``MAX_JSON_DEPTH`` and strings with lone surrogates (not encodable as UTF-8)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise APIError(400, f"the request nests deeper than {MAX_JSON_DEPTH} levels (at {path or 'body'})",
                           param=path or None, code="too_deep")
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise APIError(400, f"{path or 'body'} holds a lone UTF-16 surrogate (invalid Unicode text)",
                               param=path or None, code="invalid_unicode") from None
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, path, depth + 1))
                stack.append((child, f"{path}.{key}" if path else str(key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}.{i}" if path else str(i), depth + 1) for i, child in enumerate(item))


def supports_thinking(tokenizer) -> bool:
    """True when the model's template or vocabulary has the think markers (Qwen3-style thinking)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(template.values())
    if THINK_START in template and THINK_END in template:
        return True
    vocab = tokenizer.get_vocab()
    return THINK_START in vocab and THINK_END in vocab


def create_app(
    model,
    tokenizer,
    *,
    model_name: str = "qwenkit",
    max_batch_size: int = 32,
    batch_wait_s: float = 0.0,
    prefill_chunk: int = 256,
    prefill_budget: int = 2048,
    prefix_cache_tokens: int = 4096,
    default_max_tokens: int = 512,
    max_request_bytes: int = 2_000_000,
    max_prompt_tokens: int | None = None,
    stop_text: str | None = None,
    processor_factories: Sequence[Callable[[], Any]] = (),
):
    """The FastAPI app serving ``model``; its engine thread starts with the app and stops with it.

    ``max_prompt_tokens`` defaults to the model's context length (``max_position_embeddings``) minus one.
    ``processor_factories``: each is called once per request and gives a logits processor
    ``(input_ids[1, n], scores[1, V]) -> scores`` applied to that request (e.g. a grammar or a forcing processor).
    """
    if max_request_bytes < 1 or (max_prompt_tokens is not None and max_prompt_tokens < 1):
        raise ConfigError(f"--max-request-bytes and --max-prompt-tokens must be >= 1, got {max_request_bytes} and "
                          f"{max_prompt_tokens}")
    engine = ContinuousEngine(model, tokenizer, max_batch_size=max_batch_size, prefill_chunk=prefill_chunk,
                              prefill_budget=prefill_budget, prefix_cache_tokens=prefix_cache_tokens,
                              batch_wait_s=batch_wait_s, stop_text=stop_text)
    context = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    logits_width = int(output.weight.shape[0]) if output is not None else int(model.config.vocab_size)
    grammars = GrammarCompiler(tokenizer, logits_width, sorted(engine.stop_ids))
    limits = _Limits(default_max_tokens, context, max_prompt_tokens or (context - 1 if context else None),
                     len(tokenizer), supports_thinking(tokenizer))
    http_errors: dict[int, int] = {}

    @asynccontextmanager
    async def lifespan(_app):
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="qwenkit infer", lifespan=lifespan)
    app.state.engine = engine
    created = int(time.time())

    def error_response(exc: APIError) -> JSONResponse:
        http_errors[exc.status] = http_errors.get(exc.status, 0) + 1
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(APIError)
    async def _api_error(_request, exc: APIError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_error(_request, exc: RequestValidationError):
        return error_response(APIError(400, f"invalid request: {exc.errors()[:3]}"))

    @app.exception_handler(404)
    async def _not_found(request, _exc):
        return error_response(APIError(404, f"no route {request.method} {request.url.path}", code="not_found"))

    @app.exception_handler(405)
    async def _bad_method(request, _exc):
        return error_response(APIError(405, f"method {request.method} not allowed on {request.url.path}",
                                       code="method_not_allowed"))

    @app.exception_handler(Exception)
    async def _internal(_request, exc: Exception):
        return error_response(APIError(500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error"))

    async def read_json(request: Request, schema: type[BaseModel]):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_request_bytes:
            raise APIError(413, f"the request body has {declared} bytes; this server accepts at most "
                                f"{max_request_bytes} (--max-request-bytes)", code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_request_bytes:
                raise APIError(413, f"the request body exceeds {max_request_bytes} bytes (--max-request-bytes)",
                               code="request_too_large")
            chunks.append(chunk)
        try:
            payload = json.loads(b"".join(chunks))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
        except RecursionError:
            raise APIError(400, "the request nests too deeply to parse", code="too_deep") from None
        if not isinstance(payload, dict):
            raise APIError(400, "request body must be a JSON object")
        _check_json(payload)
        try:
            body = schema.model_validate(payload)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        if getattr(body, "model", None) not in (None, model_name):
            raise APIError(404, f"model {body.model!r} does not exist; this server serves {model_name!r}",
                           param="model", code="model_not_found")
        return body

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    async def models():
        return {"object": "list",
                "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "qwenkit",
                          "max_model_len": context or None}]}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(_prometheus(engine, http_errors), media_type="text/plain; version=0.0.4")

    @app.post("/tokenize")
    async def tokenize(request: Request):
        body = await read_json(request, TokenizeRequest)
        if (body.prompt is None) == (body.messages is None):
            raise APIError(400, "give exactly one of prompt or messages", param="prompt")

        def run():
            if body.prompt is not None:
                return _encode(tokenizer, body.prompt, limits, param="prompt")
            thinking = _thinking_default(body.chat_template_kwargs.enable_thinking, limits)
            messages = _messages(body.messages)
            prompt = (_generation_prompt(messages, tokenizer, limits, enable_thinking=thinking)[0]
                      if body.add_generation_prompt else
                      render_chat(messages, tokenizer=tokenizer, add_generation_prompt=False,
                                  enable_thinking=thinking))
            return _encode(tokenizer, prompt, limits)

        ids = await asyncio.to_thread(run)
        return {"count": len(ids), "max_model_len": context or None, "tokens": ids}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await read_json(request, ChatCompletionRequest)
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs=true", param="top_logprobs")
        requests = await asyncio.to_thread(_chat_requests, body, tokenizer, limits, grammars)
        for engine_request in requests:
            engine_request.processors = (*(factory() for factory in processor_factories), *engine_request.processors)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        return await _answer(request, engine, requests, body, completion_id, model_name, tokenizer, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_json(request, CompletionRequest)
        if body.echo and body.logprobs is not None:
            raise APIError(400, "echo with logprobs needs the prompt's log-probs, which this server does not compute; "
                                "drop logprobs or echo", param="echo", code="unsupported_field")
        requests, prompts = await asyncio.to_thread(_completion_requests, body, tokenizer, limits)
        for engine_request in requests:
            engine_request.processors = tuple(factory() for factory in processor_factories)
        completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
        echoes = {r.index: prompts[r.index // body.n] for r in requests} if body.echo else {}
        return await _answer(request, engine, requests, body, completion_id, model_name, tokenizer, chat=False,
                             echoes=echoes)

    return app


class _Limits:
    def __init__(self, default_max_tokens: int, context: int, max_prompt_tokens: int | None, vocab: int,
                 thinks: bool):
        self.default_max_tokens, self.context, self.max_prompt_tokens = default_max_tokens, context, max_prompt_tokens
        self.vocab, self.thinks = vocab, thinks


def _check_prompt_length(ids: list[int], limits: _Limits, *, what: str, param: str) -> list[int]:
    """``ids``, or a 400 ``context_length_exceeded`` naming ``param`` when they exceed ``--max-prompt-tokens``."""
    if limits.max_prompt_tokens is not None and len(ids) > limits.max_prompt_tokens:
        raise APIError(400, f"{what} has {len(ids)} tokens; this server accepts at most "
                            f"{limits.max_prompt_tokens} (--max-prompt-tokens)", param=param,
                       code="context_length_exceeded")
    return ids


def _encode(tokenizer, text: str, limits: _Limits, *, param: str = "messages") -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return _check_prompt_length(ids, limits, what="the prompt", param=param)


def _thinking_default(requested: bool | None, limits: _Limits) -> bool:
    return limits.thinks if requested is None else requested


def _generation_prompt(messages: list[dict[str, Any]], tokenizer, limits: _Limits, *, enable_thinking: bool,
                       tools: list[dict[str, Any]] | None = None) -> tuple[str, bool]:
    """(prompt, thinking) of a chat request: :func:`generation_prompt` for a model with thinking markers, and for one
    without them (e.g. SmolLM2) its own template's prompt, unchanged, unless the request asks for thinking: the empty
    ``<think></think>`` block Qwen3 reads as "do not think" means nothing to such a model and only lengthens the
    prompt (49 instead of 40 tokens for SmolLM2's one-line question)."""
    if not limits.thinks and not enable_thinking:
        return render_chat(messages, tokenizer=tokenizer, enable_thinking=False, tools=tools), False
    return generation_prompt(messages, tokenizer=tokenizer, enable_thinking=enable_thinking, tools=tools)


def _messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    try:
        return [m.as_dict() for m in messages]
    except ValueError as exc:
        raise APIError(400, str(exc), param="messages", code="unsupported_content") from None


def _chat_requests(body: ChatCompletionRequest, tokenizer, limits: _Limits,
                   grammars: GrammarCompiler) -> list[EngineRequest]:
    messages = _messages(body.messages)
    enable_thinking = _thinking_default(body.chat_template_kwargs.enable_thinking, limits)
    if not body.add_generation_prompt and not body.continue_final_message:
        raise APIError(400, "add_generation_prompt=false is only supported with continue_final_message=true",
                       param="add_generation_prompt")
    try:
        if body.continue_final_message:
            if messages[-1]["role"] != "assistant":
                raise APIError(400, "continue_final_message needs an assistant message last", param="messages")
            prompt = render_chat(messages, tokenizer=tokenizer, continue_final_message=True)
            tail = prompt[prompt.rfind("<|im_start|>") :]
            thinking = tail.rfind(THINK_START) > tail.rfind(THINK_END)
        else:
            tools = [t.as_dict() for t in body.tools] if body.tools else None
            prompt, thinking = _generation_prompt(messages, tokenizer, limits, enable_thinking=enable_thinking,
                                                  tools=tools)
    except APIError:
        raise
    except Exception as exc:  # a chat template may reject a conversation (e.g. roles out of order): the client's fault
        raise APIError(400, f"cannot render the conversation: {exc}", param="messages") from None
    if body.thinking_budget is not None:
        if not limits.thinks:
            raise APIError(400, "thinking_budget: this model has no thinking markers (<think>/</think>) in its chat "
                                "template or vocabulary, so it has no thinking to budget; remove thinking_budget",
                           param="thinking_budget", code="unsupported_for_model")
        if not thinking:
            raise APIError(400, "thinking_budget needs thinking on; thinking is off for this request "
                                "(chat_template_kwargs.enable_thinking or a /no_think switch)",
                           param="thinking_budget")
    schema = body.response_format.schema_or_none() if body.response_format is not None else None
    forced = body.forced_tools()
    if body.parallel_tool_calls is False and body.parses_tools() and forced is None:
        raise APIError(400, "parallel_tool_calls=false is only supported with a forced tool_choice (\"required\" or "
                            "a named function: exactly one call); with \"auto\" the model may write several calls",
                       param="parallel_tool_calls")
    if schema is not None and forced is not None:
        raise APIError(400, "response_format cannot be combined with a forced tool call (tool_choice "
                            f"{body.tool_choice!r}): both constrain the reply", param="response_format")
    if (schema is not None or forced is not None) and body.continue_final_message:
        raise APIError(400, "response_format and a forced tool_choice cannot be combined with "
                            "continue_final_message (the prefilled assistant text is outside the grammar)",
                       param="continue_final_message")
    ids = _encode(tokenizer, prompt, limits)
    top = (body.top_logprobs or 0) if body.logprobs else None
    requests = _engine_requests(body, ids, thinking, body.max_completion_tokens or body.max_tokens, limits,
                                budget=body.thinking_budget, top_logprobs=top, split_reasoning=True)
    if schema is not None or forced is not None:
        param = "response_format.json_schema.schema" if schema is not None and \
            body.response_format.type == "json_schema" else "response_format"
        try:
            if forced is not None:
                grammar = grammars.tool_call_grammar(forced, after_thinking=thinking)
            else:
                check_schema(schema, param)
                grammar = grammars.grammar(schema, param=param, after_thinking=thinking)
            for request in requests:
                request.processors = (grammars.processor(grammar, after_thinking=thinking,
                                                         param="tool_choice" if forced else param),)
        except SchemaError as exc:
            raise APIError(400, str(exc), param=exc.param, code="invalid_schema") from None
    return requests


MAX_CHOICES = 64
"""Most choices one request may ask for (prompts x n)."""


def _prompt_ids(body: CompletionRequest, tokenizer, limits: _Limits) -> list[tuple[list[int], str]]:
    """(token ids, text) of every prompt of a completion request (text is tokenized; ids are range-checked and
    decoded)."""
    prompt = body.prompt
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "prompt is an empty list", param="prompt")
    if len(prompt) * body.n > MAX_CHOICES:
        raise APIError(400, f"{len(prompt)} prompts x n={body.n} asks for more than {MAX_CHOICES} choices",
                       param="prompt")
    batch = []
    for p, item in enumerate(prompt):
        where = "prompt" if len(prompt) == 1 else f"prompt.{p}"
        if isinstance(item, str):
            ids = _encode(tokenizer, item, limits, param=where)
        else:
            bad = [t for t in item if not 0 <= t < limits.vocab]
            if bad:
                raise APIError(400, f"{where}: {bad[0]} is not a token id of this model (0..{limits.vocab - 1})",
                               param=where)
            ids = _check_prompt_length(list(item), limits, what=where, param=where)
        if not ids:
            raise APIError(400, f"{where} is empty", param=where)
        batch.append((ids, item if isinstance(item, str) else tokenizer.decode(ids, skip_special_tokens=False)))
    return batch


def _completion_requests(body: CompletionRequest, tokenizer,
                         limits: _Limits) -> tuple[list[EngineRequest], list[str]]:
    """The engine requests (``n`` per prompt, choice ``p * n + j``) and the prompts' texts."""
    requests, texts = [], []
    for p, (ids, text) in enumerate(_prompt_ids(body, tokenizer, limits)):
        texts.append(text)
        for request in _engine_requests(body, ids, False, body.max_tokens, limits, budget=None,
                                        top_logprobs=body.logprobs, split_reasoning=False):
            request.index += p * body.n
            requests.append(request)
    return requests, texts


def _engine_requests(body: SamplingFields, ids: list[int], thinking: bool, max_tokens: int | None, limits: _Limits,
                     *, budget: int | None, top_logprobs: int | None, split_reasoning: bool) -> list[EngineRequest]:
    if limits.context:
        room = limits.context - len(ids)
        if max_tokens is None:
            max_tokens = min(limits.default_max_tokens, room)
        if max_tokens < 1 or len(ids) + max_tokens > limits.context:
            raise APIError(400, f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceeds the model's "
                                f"context of {limits.context} tokens; shorten the prompt or lower max_tokens",
                           param="max_tokens", code="context_length_exceeded")
    max_tokens = max_tokens or limits.default_max_tokens
    bias = {}
    for key, value in (body.logit_bias or {}).items():
        if not key.isdigit() or int(key) >= limits.vocab:
            raise APIError(400, f"logit_bias key {key!r} is not a token id of this model (0..{limits.vocab - 1})",
                           param="logit_bias")
        if not (math.isfinite(value) and -100 <= value <= 100):
            raise APIError(400, f"logit_bias[{key}] = {value} is outside [-100, 100]", param="logit_bias")
        bias[int(key)] = value
    for token in body.stop_token_ids or []:
        if not 0 <= token < limits.vocab:
            raise APIError(400, f"stop_token_ids: {token} is not a token id of this model", param="stop_token_ids")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if any(not s for s in stop):
        raise APIError(400, "stop strings must not be empty", param="stop")
    requests = []
    for index in range(body.n):
        seed = None if body.seed is None else (body.seed + index) % 2**64
        requests.append(EngineRequest(
            prompt_ids=ids, thinking=thinking, max_tokens=max_tokens, budget=budget if thinking else None,
            temperature=body.temperature, top_p=body.top_p, top_k=max(0, body.top_k), min_p=body.min_p,
            presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
            repetition_penalty=body.repetition_penalty, logit_bias=bias, seed=seed, stop=tuple(stop),
            stop_token_ids=tuple(body.stop_token_ids or ()), top_logprobs=top_logprobs, stream=body.stream,
            split_reasoning=split_reasoning, index=index,
        ))
    return requests


async def _answer(http: Request, engine: ContinuousEngine, requests: list[EngineRequest], body, completion_id: str,
                  model_name: str, tokenizer, *, chat: bool, echoes: dict[int, str] | None = None):
    if body.stream_options is not None and not body.stream:
        raise APIError(400, "stream_options needs stream=true", param="stream_options")
    events: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    taps = {}
    for request in requests:
        if body.stream and request.top_logprobs is not None:
            taps[request.index] = _LogprobStream(tokenizer, request)
        request.loop, request.events = loop, events
        engine.submit(request)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        if chat:
            stream = _sse_chat(http, requests, events, completion_id, model_name, include_usage, body.parses_tools(),
                               taps)
        else:
            stream = _sse_text(http, requests, events, completion_id, model_name, include_usage, taps, body.n,
                               echoes or {})
        return StreamingResponse(stream, media_type="text/event-stream")
    results: dict[int, Any] = {}
    try:
        while len(results) < len(requests):
            try:
                index, kind, value = await asyncio.wait_for(events.get(), timeout=DISCONNECT_CHECK_S)
            except TimeoutError:
                if await http.is_disconnected():
                    return JSONResponse({}, status_code=499)
                continue
            if kind == "error":
                raise APIError(500, f"generation failed: {value}", kind="server_error")
            if kind == "done":
                results[index] = value
    finally:
        for request in requests:
            request.cancel()
    ordered = [results[i] for i in range(len(requests))]
    if chat:
        return _chat_body(ordered, requests, completion_id, model_name, tokenizer, body.parses_tools())
    return _text_body(ordered, requests, completion_id, model_name, tokenizer, engine.stop_ids, body.n, echoes or {})


class _LogprobStream:
    """The log-probs of one streamed choice, sent as its tokens are generated.

    The engine records each sampled token's id and log-prob on the request (``logprob_token_ids``,
    ``token_logprobs``, ``alternatives``; the id last, so every recorded id has its log-probs). :meth:`take` returns
    the entries recorded and not yet sent, so the chunks together carry exactly one entry per generated token, in
    order. A chunk's entries are those of the tokens generated since the previous chunk; its text may lag them (text
    is held back at a partial character, a possible stop string or a possible tool call).
    """

    def __init__(self, tokenizer, request: EngineRequest):
        self.tokenizer, self.request = tokenizer, request
        self.sent = 0
        self.offset = 0

    def take(self) -> list[tuple[int, float, list[tuple[int, float]]]]:
        request = self.request
        known = min(len(request.logprob_token_ids), len(request.token_logprobs))
        if request.top_logprobs:
            known = min(known, len(request.alternatives))
        entries = [(request.logprob_token_ids[i], request.token_logprobs[i],
                    request.alternatives[i] if request.top_logprobs else []) for i in range(self.sent, known)]
        self.sent = max(self.sent, known)
        return entries

    def chat(self) -> dict[str, Any] | None:
        entries = self.take()
        if not entries:
            return None
        content = []
        for token, logprob, alternatives in entries:
            entry = _token_entry(self.tokenizer, token, logprob)
            entry["top_logprobs"] = [_token_entry(self.tokenizer, t, lp) for t, lp in alternatives]
            content.append(entry)
        return {"content": content}

    def text(self) -> dict[str, Any] | None:
        entries = self.take()
        if not entries:
            return None
        tokens = [self.tokenizer.decode([t], skip_special_tokens=False) for t, _, _ in entries]
        offsets = []
        for token in tokens:
            offsets.append(self.offset)
            self.offset += len(token)
        top = ([{self.tokenizer.decode([t], skip_special_tokens=False): lp for t, lp in alternatives}
                for _, _, alternatives in entries] if self.request.top_logprobs else None)
        return {"tokens": tokens, "token_logprobs": [lp for _, lp, _ in entries], "top_logprobs": top,
                "text_offset": offsets}


def _usage(results, choices_per_prompt: int = 1) -> dict[str, Any]:
    """Token counts of a reply; every prompt was answered ``choices_per_prompt`` (``n``) times and counts once."""
    prompt = sum(r.usage.get("prompt_tokens", 0) for r in results) // choices_per_prompt
    completion = sum(r.usage.get("completion_tokens", len(r.token_ids)) for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": sum(r.thinking_tokens or 0 for r in results)}}


def _token_entry(tokenizer, token: int, logprob: float) -> dict[str, Any]:
    text = tokenizer.decode([token], skip_special_tokens=False)
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8", errors="replace"))}


def _chat_logprobs(tokenizer, result, request: EngineRequest) -> dict[str, Any] | None:
    if request.top_logprobs is None:
        return None
    entries = []
    for i, token in enumerate(result.token_ids):
        entry = _token_entry(tokenizer, token, request.token_logprobs[i])
        alternatives = request.alternatives[i] if request.top_logprobs else []
        entry["top_logprobs"] = [_token_entry(tokenizer, t, lp) for t, lp in alternatives]
        entries.append(entry)
    return {"content": entries}


def _chat_body(results, requests, completion_id: str, model_name: str, tokenizer,
               parse_tools: bool) -> dict[str, Any]:
    choices = []
    for i, (result, request) in enumerate(zip(results, requests, strict=True)):
        message = {"role": "assistant", "content": result.content,
                   "reasoning_content": result.reasoning if result.thinking else None}
        finish = result.finish_reason
        if parse_tools:
            content, calls = parse_tool_calls(result.content)
            if calls:
                message.update(content=content or None, tool_calls=[c.openai() for c in calls])
                finish = "tool_calls"
        choices.append({"index": i, "finish_reason": finish, "message": message,
                        "logprobs": _chat_logprobs(tokenizer, result, request)})
    return {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model_name,
            "choices": choices, "usage": _usage(results, len(results)),
            "thinking_budget_hit": any(r.budget_hit for r in results)}


def _text_body(results, requests, completion_id: str, model_name: str, tokenizer, stop_ids: set[int],
               n: int = 1, echoes: dict[int, str] | None = None) -> dict[str, Any]:
    choices = []
    for i, (result, request) in enumerate(zip(results, requests, strict=True)):
        text = (echoes or {}).get(i, "") + _stream_text(tokenizer, result, set(request.stop_token_ids) | stop_ids,
                                                        request.stop)
        logprobs = None
        if request.top_logprobs is not None:
            tokens = [tokenizer.decode([t], skip_special_tokens=False) for t in result.token_ids]
            offsets, at = [], 0
            for token in tokens:
                offsets.append(at)
                at += len(token)
            logprobs = {"tokens": tokens, "token_logprobs": request.token_logprobs[: len(tokens)],
                        "top_logprobs": [{tokenizer.decode([t], skip_special_tokens=False): lp for t, lp in alts}
                                         for alts in request.alternatives] if request.top_logprobs else None,
                        "text_offset": offsets}
        choices.append({"index": i, "text": text, "finish_reason": result.finish_reason, "logprobs": logprobs})
    usage = _usage(results, n)
    usage.pop("completion_tokens_details")
    return {"id": completion_id, "object": "text_completion", "created": int(time.time()), "model": model_name,
            "choices": choices, "usage": usage}


async def _events(http: Request, requests: list[EngineRequest], events: asyncio.Queue):
    """Yield (index, kind, value) until every request is done; cancel them all when the client goes away (checked
    at least every ``DISCONNECT_CHECK_S``: the ASGI server may not raise when a closed connection is written to)."""
    done = 0
    checked = time.monotonic()
    try:
        while done < len(requests):
            try:
                index, kind, value = await asyncio.wait_for(events.get(), timeout=DISCONNECT_CHECK_S)
            except TimeoutError:
                index, kind, value = -1, "wait", None
            if time.monotonic() - checked >= DISCONNECT_CHECK_S:
                checked = time.monotonic()
                if await http.is_disconnected():
                    return
            if kind == "wait":
                continue
            yield index, kind, value
            if kind in ("done", "error"):
                done += 1
    finally:
        for request in requests:
            request.cancel()


async def _sse_chat(http: Request, requests, events, completion_id: str, model_name: str, include_usage: bool,
                    parse_tools: bool = False, taps: dict[int, _LogprobStream] | None = None):
    """Chat chunks; with tools, content from a (possibly partial) ``<tool_call>`` on is held until the reply ends,
    then sent as ``delta.tool_calls`` (and the text around the calls as content). With ``taps`` (``logprobs``),
    each choice's chunks carry the log-probs of its tokens generated so far (see :class:`_LogprobStream`)."""
    created = int(time.time())
    taps = taps or {}

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        logprobs = taps[index].chat() if index in taps else None
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}]}
        if include_usage:
            data["usage"] = None
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    for request in requests:
        yield chunk(request.index, {"role": "assistant", "content": ""})
    results = []
    content: dict[int, str] = {}
    sent: dict[int, int] = {}
    async for index, kind, value in _events(http, requests, events):
        if kind == "reasoning":
            yield chunk(index, {"reasoning_content": value})
        elif kind == "content" and not parse_tools:
            yield chunk(index, {"content": value})
        elif kind == "content":
            content[index] = content.get(index, "") + value
            held = may_start_tool_call(content[index])
            safe = content[index] if held < 0 else content[index][:held]
            if len(safe) > sent.get(index, 0):
                yield chunk(index, {"content": safe[sent.get(index, 0) :]})
                sent[index] = len(safe)
        elif kind == "error":
            error = APIError(500, f"generation failed: {value}", kind="server_error")
            yield f"data: {json.dumps(error.body())}\n\n"
            return
        elif kind == "done":
            results.append(value)
            finish = value.finish_reason
            if parse_tools:
                text = content.get(index, "")
                rest, calls = parse_tool_calls(text[sent.get(index, 0) :])
                if rest:
                    yield chunk(index, {"content": rest})
                if calls:
                    yield chunk(index, {"tool_calls": [c.openai(i) for i, c in enumerate(calls)]})
                    finish = "tool_calls"
            yield chunk(index, {}, finish)
    if include_usage:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                "choices": [], "usage": _usage(results, len(results))}
        yield f"data: {json.dumps(data)}\n\n"
    yield "data: [DONE]\n\n"


async def _sse_text(http: Request, requests, events, completion_id: str, model_name: str, include_usage: bool,
                    taps: dict[int, _LogprobStream] | None = None, n: int = 1,
                    echoes: dict[int, str] | None = None):
    created = int(time.time())
    taps = taps or {}

    def chunk(index: int, text: str, finish_reason: str | None = None) -> str:
        logprobs = taps[index].text() if index in taps else None
        data = {"id": completion_id, "object": "text_completion", "created": created, "model": model_name,
                "choices": [{"index": index, "text": text, "finish_reason": finish_reason, "logprobs": logprobs}]}
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    for index, prompt in sorted((echoes or {}).items()):
        yield chunk(index, prompt)
    results = []
    async for index, kind, value in _events(http, requests, events):
        if kind in ("reasoning", "content"):
            yield chunk(index, value)
        elif kind == "error":
            error = APIError(500, f"generation failed: {value}", kind="server_error")
            yield f"data: {json.dumps(error.body())}\n\n"
            return
        elif kind == "done":
            results.append(value)
            yield chunk(index, "", value.finish_reason)
    if include_usage:
        usage = _usage(results, n)
        usage.pop("completion_tokens_details")
        data = {"id": completion_id, "object": "text_completion", "created": created, "model": model_name,
                "choices": [], "usage": usage}
        yield f"data: {json.dumps(data)}\n\n"
    yield "data: [DONE]\n\n"


def _prometheus(engine: ContinuousEngine, http_errors: dict[int, int]) -> str:
    """The engine's counters and gauges in the Prometheus text exposition format (version 0.0.4)."""
    stats = engine.stats
    lines = []

    def metric(name: str, kind: str, help_text: str, value: float, labels: str = "") -> None:
        if not any(line.startswith(f"# HELP {name} ") for line in lines):
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
        lines.append(f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}")

    metric("qwenkit_requests_total", "counter", "Requests submitted to the engine.", stats.requests)
    metric("qwenkit_requests_finished_total", "counter", "Requests answered in full.", stats.finished)
    metric("qwenkit_requests_cancelled_total", "counter", "Requests dropped because the client went away.",
           stats.cancelled)
    metric("qwenkit_requests_failed_total", "counter", "Requests ended by an engine error.", stats.failed)
    metric("qwenkit_prompt_tokens_total", "counter", "Prompt tokens submitted.", stats.prompt_tokens)
    metric("qwenkit_generation_tokens_total", "counter", "Tokens generated.", stats.generated_tokens)
    metric("qwenkit_prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.",
           engine.prefix_cache.queried_tokens)
    metric("qwenkit_prefix_cache_hits_total", "counter", "Prompt tokens whose KV the prefix cache supplied.",
           engine.prefix_cache.hit_tokens)
    metric("qwenkit_prefix_cache_tokens", "gauge", "Prompt-prefix tokens the prefix cache holds.",
           engine.prefix_cache.tokens)
    metric("qwenkit_engine_steps_total", "counter", "Scheduler steps run.", stats.steps)
    metric("qwenkit_engine_step_seconds_total", "counter", "Seconds spent in scheduler steps.",
           float(stats.step_seconds))
    metric("qwenkit_num_requests_running", "gauge", "Requests in the decoding batch.", stats.running)
    metric("qwenkit_num_requests_waiting", "gauge", "Requests waiting for or in prefill.", stats.waiting)
    ttft = sorted(stats.ttft_seconds)
    for quantile in (0.5, 0.95):
        value = ttft[min(len(ttft) - 1, int(quantile * len(ttft)))] if ttft else float("nan")
        metric("qwenkit_time_to_first_token_seconds", "summary",
               "Time from submission to the first token (last 1000 requests).", float(value),
               f'{{quantile="{quantile}"}}')
    for status, count in sorted(http_errors.items()):
        metric("qwenkit_http_errors_total", "counter", "Error responses by status.", count, f'{{status="{status}"}}')
    return "\n".join(lines) + "\n"
