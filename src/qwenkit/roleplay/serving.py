"""A minimal OpenAI-compatible ``/v1/chat/completions`` app over any chat backend, for the demo and the benchmark.

It serves one :class:`qwenkit.lm.ChatBackend` (a local SmolLM2 as the demo's judge; a scripted backend behind a fixed
delay in the concurrency benchmark) with ``serve_in_background``. Non-streaming chat completions only: a request
with ``stream: true``, an unknown field or a malformed body gets a 400 in the OpenAI error shape, never a 500.
Backend calls run in a worker thread (one at a time for a local model), so the event loop keeps accepting requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class _Kwargs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enable_thinking: bool | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int = Field(default=256, ge=1, le=8192)
    temperature: float = Field(default=0.7, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=0, ge=0)
    seed: int | None = None
    stop: list[str] | None = None
    stream: bool = False
    chat_template_kwargs: _Kwargs | None = None


def _error(status: int, message: str, param: str | None = None):
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": "invalid_request_error",
                                                               "param": param, "code": None}})


def chat_app(backend: Any, *, model_name: str, delay_s: float = 0.0, exclusive: bool = True):
    """The FastAPI app. ``delay_s`` is added to every answer (``asyncio.sleep``: concurrent requests overlap);
    ``exclusive`` serialises backend calls (a local model is one process-wide resource)."""
    app = FastAPI(title=f"qwenkit roleplay server: {model_name}")
    lock = threading.Lock()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        return _error(400, f"invalid request: {first.get('msg', 'malformed body')}",
                      ".".join(str(p) for p in first.get("loc", ())))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "qwenkit"}]}

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        try:
            body = ChatRequest.model_validate(await request.json())
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first["loc"])
            message = ("unsupported field; this server accepts only " + ", ".join(ChatRequest.model_fields)
                       if first["type"] == "extra_forbidden" else first["msg"])
            return _error(400, f"{param}: {message}", param)
        except ValueError:
            return _error(400, "the body is not valid JSON")
        if body.stream:
            return _error(400, "stream: streaming is not supported by this server; send stream: false", "stream")
        if body.model != model_name:
            return _error(404, f"model {body.model!r} is not served here; this server serves {model_name!r}", "model")
        extra = {}
        if body.chat_template_kwargs is not None and body.chat_template_kwargs.enable_thinking is not None:
            extra["enable_thinking"] = body.chat_template_kwargs.enable_thinking

        def run():
            with lock if exclusive else contextlib.nullcontext():
                return backend.complete([m.model_dump() for m in body.messages], max_tokens=body.max_tokens,
                                        temperature=body.temperature, top_p=body.top_p, top_k=body.top_k,
                                        seed=body.seed, stop=body.stop, extra=extra)

        started = time.monotonic()
        completion = await asyncio.to_thread(run)
        await asyncio.sleep(max(0.0, delay_s - (time.monotonic() - started)))
        usage = {"prompt_tokens": completion.usage.get("prompt_tokens", 0),
                 "completion_tokens": completion.usage.get("completion_tokens", 0)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        message = {"role": "assistant", "content": completion.text}
        if completion.reasoning:
            message["reasoning_content"] = completion.reasoning
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion", "created": int(time.time()),
                "model": model_name, "choices": [{"index": 0, "message": message,
                                                  "finish_reason": completion.finish_reason}], "usage": usage}

    return app
