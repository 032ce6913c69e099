"""An OpenAI-compatible chat server (FastAPI): ``/v1/chat/completions`` (streamed or not), ``/v1/models``, ``/health``.

Request fields beyond OpenAI's: ``chat_template_kwargs.enable_thinking`` (Qwen3's hard switch, as vLLM/SGLang take
it), ``thinking_budget`` (exact, Qwen's stop text forced after N thinking tokens), ``top_k``, and vLLM's
``continue_final_message``/``add_generation_prompt`` (the prefill that the two-pass budget of a client needs).
Responses carry ``reasoning_content`` next to ``content`` (``delta.reasoning_content`` when streaming) and
``usage.completion_tokens_details.reasoning_tokens``. Every bad request gets an OpenAI-shaped error
``{"error": {"message", "type", "param", "code"}}`` with a 4xx status. Concurrent requests are generated in batches
by :class:`qwenkit.infer.engine.BatchEngine`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qwenkit.infer.engine import BatchEngine, EngineRequest
from qwenkit.lm.chat import THINK_END, THINK_START, generation_prompt, render_chat


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None

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
        return message


class ChatTemplateKwargs(BaseModel):
    model_config = ConfigDict(extra="allow")
    enable_thinking: bool = True


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The fields this server reads; other OpenAI fields (``user``, ``metadata``, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)
    chat_template_kwargs: ChatTemplateKwargs = Field(default_factory=ChatTemplateKwargs)
    thinking_budget: int | None = Field(None, ge=0)
    continue_final_message: bool = False
    add_generation_prompt: bool = True


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _validation_error(exc: ValidationError) -> APIError:
    first = exc.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
    return APIError(400, f"invalid request: {problems}", param=param, code="invalid_value")


def create_app(
    model,
    tokenizer,
    *,
    model_name: str = "qwenkit",
    max_batch_size: int = 32,
    batch_wait_s: float = 0.01,
    default_max_tokens: int = 512,
    stop_text: str | None = None,
):
    """The FastAPI app serving ``model``; its engine thread starts with the app and stops with it."""
    engine = BatchEngine(model, tokenizer, max_batch_size=max_batch_size, batch_wait_s=batch_wait_s,
                         stop_text=stop_text)
    context_length = int(getattr(model.config, "max_position_embeddings", 0) or 0)

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

    @app.exception_handler(APIError)
    async def _api_error(_request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _request_error(_request, exc: RequestValidationError):
        return JSONResponse(APIError(400, f"invalid request: {exc.errors()[:3]}").body(), status_code=400)

    @app.exception_handler(404)
    async def _not_found(request, _exc):
        error = APIError(404, f"no route {request.method} {request.url.path}", code="not_found")
        return JSONResponse(error.body(), status_code=404)

    @app.exception_handler(405)
    async def _bad_method(request, _exc):
        error = APIError(405, f"method {request.method} not allowed on {request.url.path}", code="method_not_allowed")
        return JSONResponse(error.body(), status_code=405)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    async def models():
        return {"object": "list",
                "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "qwenkit"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(payload, dict):
            raise APIError(400, "request body must be a JSON object")
        try:
            body = ChatCompletionRequest.model_validate(payload)
        except ValidationError as exc:
            raise _validation_error(exc) from None
        if body.model != model_name:
            raise APIError(404, f"model {body.model!r} does not exist; this server serves {model_name!r}",
                           param="model", code="model_not_found")
        engine_request = _engine_request(body, tokenizer, default_max_tokens, context_length)
        engine_request.loop = asyncio.get_running_loop()
        engine_request.events = asyncio.Queue()
        engine.submit(engine_request)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _sse(engine_request, completion_id, model_name, include_usage), media_type="text/event-stream"
            )
        while True:
            kind, value = await engine_request.events.get()
            if kind == "error":
                raise APIError(500, f"generation failed: {value}", kind="server_error")
            if kind == "done":
                return _completion_body(value, completion_id, model_name)

    return app


def _engine_request(body: ChatCompletionRequest, tokenizer, default_max_tokens: int, context: int) -> EngineRequest:
    try:
        messages = [m.as_dict() for m in body.messages]
    except ValueError as exc:
        raise APIError(400, str(exc), param="messages", code="unsupported_content") from None
    enable_thinking = body.chat_template_kwargs.enable_thinking
    try:
        if body.continue_final_message:
            if messages[-1]["role"] != "assistant":
                raise APIError(400, "continue_final_message needs an assistant message last", param="messages")
            prompt = render_chat(messages, tokenizer=tokenizer, continue_final_message=True)
            tail = prompt[prompt.rfind("<|im_start|>") :]
            thinking = tail.rfind(THINK_START) > tail.rfind(THINK_END)
        else:
            prompt, thinking = generation_prompt(messages, tokenizer=tokenizer, enable_thinking=enable_thinking)
    except APIError:
        raise
    except Exception as exc:  # a chat template may reject a conversation (e.g. roles out of order): the client's fault
        raise APIError(400, f"cannot render the conversation: {exc}", param="messages") from None
    prompt_ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    max_tokens = body.max_completion_tokens or body.max_tokens or default_max_tokens
    if context and len(prompt_ids) + max_tokens > context:
        raise APIError(400, f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) exceeds the model's "
                       f"context of {context} tokens; shorten the conversation or lower max_tokens",
                       param="max_tokens", code="context_length_exceeded")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return EngineRequest(
        prompt_ids=prompt_ids, thinking=thinking, max_tokens=max_tokens,
        budget=body.thinking_budget if thinking else None, temperature=body.temperature, top_p=body.top_p,
        top_k=max(0, body.top_k), seed=body.seed, stop=tuple(stop), stream=body.stream,
    )


def _usage(result) -> dict[str, Any]:
    prompt = result.usage.get("prompt_tokens", 0)
    completion = result.usage.get("completion_tokens", len(result.token_ids))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": result.thinking_tokens or 0}}


def _completion_body(result, completion_id: str, model_name: str) -> dict[str, Any]:
    return {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model_name,
        "choices": [{
            "index": 0, "finish_reason": result.finish_reason, "logprobs": None,
            "message": {"role": "assistant", "content": result.content,
                        "reasoning_content": result.reasoning if result.thinking else None},
        }],
        "usage": _usage(result),
        "thinking_budget_hit": result.budget_hit,
    }


async def _sse(request: EngineRequest, completion_id: str, model_name: str, include_usage: bool):
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **more: Any) -> str:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}], **more}
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    while True:
        kind, value = await request.events.get()
        if kind == "reasoning":
            yield chunk({"reasoning_content": value})
        elif kind == "content":
            yield chunk({"content": value})
        elif kind == "error":
            error = APIError(500, f"generation failed: {value}", kind="server_error")
            yield f"data: {json.dumps(error.body())}\n\n"
            break
        elif kind == "done":
            yield chunk({}, value.finish_reason)
            if include_usage:
                data = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                        "model": model_name, "choices": [], "usage": _usage(value)}
                yield f"data: {json.dumps(data)}\n\n"
            break
    yield "data: [DONE]\n\n"
