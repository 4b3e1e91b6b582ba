"""The OpenAI-compatible HTTP API (Starlette): /v1/models, /v1/chat/completions, /v1/completions.

Requests are checked the way OpenAI checks them: a body that is not a JSON object, an unknown or
mistyped field, n other than 1, a prompt that fills the context or a sampling value out of the
bounds of core.sampling get 400 with OpenAI's error JSON; another model name 404; a missing or wrong
key 401 when the server has one. Chats are rendered by the tokenizer's chat template. Replies come
whole or as server-sent events; a streamed client that disconnects cancels its job in the engine.
`max_tokens` beyond the room left in the context is cut to that room (finish_reason "length").
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from core.errors import UserError
from core.sampling import check_sampling
from core.serve.engine import Engine, Job, Outcome

MAX_BODY_BYTES = 8 << 20
NUMBER = (int, float)
# OpenAI fields accepted besides the sampling ones; None: any value is ignored
COMMON: dict[str, tuple[type, ...]] = {"model": (str,), "stream": (bool,), "stream_options": (dict,), "n": (int,),
                                       "user": (str,), "frequency_penalty": NUMBER, "presence_penalty": NUMBER}
SAMPLING = {"temperature", "top_p", "top_k", "max_tokens", "stop", "seed"}
CHAT_FIELDS = {**COMMON, "messages": (list,), "max_completion_tokens": (int,), "logprobs": (bool,)}
COMPLETION_FIELDS = {**COMMON, "prompt": (str, list), "echo": (bool,), "logprobs": (int,), "best_of": (int,)}
ROLE_ALIASES = {"developer": "system"}


class ApiError(Exception):
    """A request refused with an HTTP status and OpenAI's error JSON."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        kind = {401: "authentication_error", 404: "not_found_error"}.get(self.status, "invalid_request_error")
        if self.status >= 500:
            kind = "server_error"
        return JSONResponse({"error": {"message": self.message, "type": kind, "param": self.param,
                                       "code": self.code}}, status_code=self.status)


@dataclass
class Served:
    """What the API serves: one model behind its engine, its name, context and default sampling."""

    engine: Engine
    model_id: str
    context_length: int
    defaults: dict[str, Any]  # generate_text options from the preset's [generate]
    api_key: str = ""
    log: Callable[[dict], None] = lambda event: None
    created: int = 0


@dataclass
class Prepared:
    kind: str  # chat | completion
    prompt_ids: list[int]
    options: dict[str, Any]
    stop_ids: list[int]
    stream: bool
    include_usage: bool


# ------------------------------------------------------------------------------------ checking

def authorize(served: Served, request: Request) -> None:
    if not served.api_key:
        return
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), served.api_key.encode()):
        what = "a wrong API key" if header else "no API key (send Authorization: Bearer KEY)"
        raise ApiError(401, f"Incorrect API key provided: the request has {what}", code="invalid_api_key")


async def read_json(request: Request) -> dict:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is larger than {MAX_BODY_BYTES >> 20} MiB")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = json.loads(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise ApiError(400, f"the request body is not valid JSON ({e})") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def check_fields(body: dict, fields: dict[str, tuple[type, ...]]) -> None:
    for key, value in body.items():
        if key in SAMPLING or value is None:
            continue
        if key not in fields:
            raise ApiError(400, f"Unrecognized request argument supplied: {key}", param=key)
        types = fields[key]
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            names = " or ".join({"str": "a string", "bool": "a boolean", "int": "an integer", "float": "a number",
                                 "dict": "an object", "list": "an array"}[t.__name__] for t in types)
            raise ApiError(400, f"{key}: expected {names}, got {json.dumps(value)[:40]}", param=key)
    if body.get("model") is None:
        raise ApiError(400, "model: required (GET /v1/models lists the served model)", param="model")
    if body.get("n") not in (None, 1):
        raise ApiError(400, f"n: only n=1 is supported, got {body['n']}", param="n")
    for key in ("frequency_penalty", "presence_penalty"):
        if body.get(key):
            raise ApiError(400, f"{key}: not supported (only 0)", param=key)
    if body.get("logprobs") or body.get("echo") or body.get("best_of") not in (None, 1):
        key = next(k for k in ("logprobs", "echo", "best_of") if body.get(k))
        raise ApiError(400, f"{key}: not supported", param=key)


def check_model(served: Served, name: str) -> None:
    if name != served.model_id:
        raise ApiError(404, f"The model {name!r} does not exist; this server serves {served.model_id!r}",
                       param="model", code="model_not_found")


def sampling_options(served: Served, body: dict, prompt_tokens: int) -> dict[str, Any]:
    """generate_text options: the request's sampling values over the preset's, max_tokens cut to the
    room the prompt leaves in the context."""
    if prompt_tokens >= served.context_length:
        raise ApiError(400, f"This model's maximum context length is {served.context_length} tokens, but the prompt "
                            f"is {prompt_tokens} tokens; shorten it", param="messages", code="context_length_exceeded")
    values = {k: body[k] for k in ("temperature", "top_p", "top_k", "seed") if body.get(k) is not None}
    max_tokens = body.get("max_completion_tokens")
    max_tokens = body.get("max_tokens") if max_tokens is None else max_tokens
    if max_tokens is not None:
        values["max_new_tokens"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        values["stop"] = [stop] if isinstance(stop, str) else stop
    try:
        check_sampling(values, "request")
    except UserError as e:
        message = str(e).replace("max_new_tokens", "max_tokens")
        raise ApiError(400, message, param=message.split(": ")[1] if message.count(": ") > 1 else None) from None
    options = {**served.defaults, **values}
    options["max_new_tokens"] = min(options["max_new_tokens"], served.context_length - prompt_tokens)
    return options


def chat_messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages: required, a non-empty array of {role, content}", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}]: expected an object with a role and content", param="messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: text only
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise ApiError(400, f"messages[{i}].content: only text parts are supported", param="messages")
            content = "".join(p["text"] for p in content)
        if content is None and m["role"] == "assistant":
            content = ""
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content: expected a string", param="messages")
        out.append({"role": ROLE_ALIASES.get(m["role"], m["role"]), "content": content})
    return out


def prepare_chat(served: Served, body: dict) -> Prepared:
    check_fields(body, CHAT_FIELDS)
    check_model(served, body["model"])
    chat = served.engine.tokenizer.chat
    try:
        ids, _ = chat.render(chat_messages(body), add_generation_prompt=True)
    except UserError as e:
        raise ApiError(400, f"messages: {e}", param="messages") from None
    return Prepared("chat", ids, sampling_options(served, body, len(ids)), list(chat.stop_ids),
                    bool(body.get("stream")), bool((body.get("stream_options") or {}).get("include_usage")))


def prepare_completion(served: Served, body: dict) -> Prepared:
    check_fields(body, COMPLETION_FIELDS)
    check_model(served, body["model"])
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    tok = served.engine.tokenizer
    if isinstance(prompt, str):
        ids = tok.encode(prompt, allowed_special="all")  # as `llmlab generate` encodes a prompt
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        ids = list(prompt)
        if not all(0 <= t < tok.n_vocab for t in ids):
            raise ApiError(400, f"prompt: token ids must be in [0, {tok.n_vocab})", param="prompt")
    else:
        raise ApiError(400, "prompt: expected a string, one string in an array, or an array of token ids",
                       param="prompt")
    if not ids:
        raise ApiError(400, "prompt: empty", param="prompt")
    eot = getattr(tok, "eot_id", None)
    return Prepared("completion", ids, sampling_options(served, body, len(ids)), [] if eot is None else [eot],
                    bool(body.get("stream")), bool((body.get("stream_options") or {}).get("include_usage")))


# ------------------------------------------------------------------------------------ replying

async def job_events(served: Served, prep: Prepared, endpoint: str) -> AsyncIterator[tuple[str, Any]]:
    """Submit the job and yield what the engine emits; leaving early (a client that went away)
    cancels the job."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    job = Job(prep.prompt_ids, prep.options, prep.stop_ids, lambda item: None, endpoint)

    def emit(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, item)
        except RuntimeError:  # the event loop is gone: nobody is listening
            job.cancel.set()

    job.emit = emit
    served.engine.submit(job)
    try:
        while True:
            item = await inbox.get()
            # pieces that arrived while the last chunk was being sent go out as one (a fast model
            # outruns the event loop; one chunk per token would cost more than the tokens)
            while item[0] == "text" and not inbox.empty():
                nxt = inbox.get_nowait()
                if nxt[0] != "text":
                    yield item
                    item = nxt
                    break
                item = ("text", item[1] + nxt[1])
            yield item
            if item[0] == "done":
                return
    finally:
        job.cancel.set()


def usage(prep: Prepared, out: Outcome) -> dict:
    n = len(prep.prompt_ids)
    return {"prompt_tokens": n, "completion_tokens": out.completion_tokens, "total_tokens": n + out.completion_tokens}


def finish(out: Outcome) -> str:
    if out.finish_reason == "error":
        raise ApiError(500, f"generation failed: {out.error}")
    return out.finish_reason if out.finish_reason in ("stop", "length") else "stop"


def choice(prep: Prepared, text: str | None, reason: str | None, first: bool = False, stream: bool = False) -> dict:
    if prep.kind == "completion":
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": reason}
    if not stream:
        return {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": reason}
    delta = {"role": "assistant", "content": text or ""} if first else ({"content": text} if text is not None else {})
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}


def envelope(served: Served, prep: Prepared, rid: str, stream: bool, **fields: Any) -> dict:
    obj = "text_completion" if prep.kind == "completion" else ("chat.completion.chunk" if stream else "chat.completion")
    return {"id": rid, "object": obj, "created": int(time.time()), "model": served.model_id, **fields}


async def reply_whole(served: Served, prep: Prepared, endpoint: str, rid: str) -> JSONResponse:
    parts: list[str] = []
    out = Outcome("error", error="no reply")
    async for kind, payload in job_events(served, prep, endpoint):
        if kind == "text":
            parts.append(payload)
        else:
            out = payload
    reason = finish(out)
    body = envelope(served, prep, rid, False, choices=[choice(prep, "".join(parts), reason)], usage=usage(prep, out))
    return JSONResponse(body)


def sse(obj: dict | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n"


async def reply_stream(served: Served, prep: Prepared, endpoint: str, rid: str) -> AsyncIterator[str]:
    if prep.kind == "chat":
        yield sse(envelope(served, prep, rid, True, choices=[choice(prep, "", None, first=True, stream=True)]))
    async for kind, payload in job_events(served, prep, endpoint):
        if kind == "text":
            yield sse(envelope(served, prep, rid, True, choices=[choice(prep, payload, None, stream=True)]))
            continue
        try:
            reason = finish(payload)
        except ApiError as e:
            yield sse({"error": {"message": e.message, "type": "server_error", "param": None, "code": None}})
            return
        yield sse(envelope(served, prep, rid, True, choices=[choice(prep, None, reason, stream=True)]))
        if prep.include_usage:
            yield sse(envelope(served, prep, rid, True, choices=[], usage=usage(prep, payload)))
    yield sse("[DONE]")


# ------------------------------------------------------------------------------------ the app

def create_app(served: Served) -> Starlette:
    """The Starlette app over `served` (run it with core.serve.server)."""
    served.created = served.created or int(time.time())

    def model_card() -> dict:
        return {"id": served.model_id, "object": "model", "created": served.created, "owned_by": "llmlab"}

    async def list_models(request: Request) -> Response:
        authorize(served, request)
        return JSONResponse({"object": "list", "data": [model_card()]})

    async def get_model(request: Request) -> Response:
        authorize(served, request)
        check_model(served, request.path_params["name"])
        return JSONResponse(model_card())

    def endpoint(prepare: Callable[[Served, dict], Prepared]):
        async def handle(request: Request) -> Response:
            authorize(served, request)
            prep = prepare(served, await read_json(request))
            name = request.url.path
            rid = f"{'chatcmpl' if prep.kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
            if prep.stream:
                return StreamingResponse(reply_stream(served, prep, name, rid), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            return await reply_whole(served, prep, name, rid)
        return handle

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        served.log({"kind": "request", "endpoint": request.url.path, "status": exc.status, "error": exc.message})
        return exc.response()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}").response()

    routes = [Route("/v1/models", list_models, methods=["GET"]),
              Route("/v1/models/{name:path}", get_model, methods=["GET"]),
              Route("/v1/chat/completions", endpoint(prepare_chat), methods=["POST"]),
              Route("/v1/completions", endpoint(prepare_completion), methods=["POST"])]
    return Starlette(routes=routes, exception_handlers={ApiError: api_error, HTTPException: http_error})
