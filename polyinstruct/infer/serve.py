"""An OpenAI-compatible HTTP server over any ``GenerationBackend``.

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` and
``POST /v1/completions`` (both with ``stream: true`` as server-sent events). Binds to
127.0.0.1 unless told otherwise; an optional API key is checked as a Bearer token.
Requests are validated (4xx with an OpenAI-style error body naming the field), bodies
and ``max_tokens`` are capped, and one worker thread owns the model, batching waiting
requests (see ``worker.py``), so concurrent clients never crash it.

Each request's work is bounded (docs/inference.md, "Limits"): at most
``max_prompts_per_request`` prompts, and the tokens admitted but unfinished
(prompt + ``max_tokens`` per prompt, over all requests) stay under
``max_queued_tokens``: a request that can never fit gets a 400, one that does not
fit now a 503 with ``Retry-After``, and neither leaves work behind. When a client
disconnects, its queued prompts are dropped and a running batch of only its prompts
stops at the next token. Options the server cannot honour (``tools``,
``response_format``, ...) and unknown fields are a 400, never silently ignored.

For evaluators (lm-eval's ``local-completions``, as vLLM serves them; docs/inference.md,
"Log-probabilities"): ``/v1/completions`` takes ``echo``, ``logprobs`` (with ``tokens``,
``token_logprobs``, ``top_logprobs``, ``text_offset`` in the reply), prompts as token ids and
``max_tokens=0`` with ``echo``; chat takes ``logprobs``/``top_logprobs``; ``GET /tokenizer_info``,
``POST /tokenize`` and ``POST /detokenize`` expose the model's tokenizer. These need a backend
with the model in process (``hf``); others answer 400.
"""

from __future__ import annotations

import asyncio
import difflib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from polyinstruct.errors import ConfigError
from polyinstruct.infer import logprobs as lp
from polyinstruct.infer.backend import DecodingParams, Generation, GenerationBackend
from polyinstruct.infer.context import ContextLengthError, check_fits
from polyinstruct.infer.decoding import validate_decoding
from polyinstruct.infer.serve_schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    SamplingFields,
    TokenizeRequest,
)
from polyinstruct.infer.worker import BatchWorker, Job, QueueFullError, is_end

log = logging.getLogger(__name__)

# Accepted and ignored: bookkeeping fields that do not change the reply.
IGNORED_OPTIONS = frozenset({"user", "metadata", "store", "service_tier", "parallel_tool_calls",
                             "prompt_cache_key", "safety_identifier"})
# Options this server cannot honour: accepted only with their "off" value, else a 400.
UNSUPPORTED_OPTIONS: dict[str, tuple[Any, ...]] = {
    "tools": (None, []), "tool_choice": (None, "none"),
    "functions": (None, []), "function_call": (None, "none"), "response_format": (None, {"type": "text"}),
    "logit_bias": (None, {}), "modalities": (None, ["text"]), "audio": (None,), "prediction": (None,),
    "web_search_options": (None,), "reasoning_effort": (None,), "best_of": (None, 1), "min_p": (None, 0, 0.0),
    "guided_json": (None,), "guided_regex": (None,), "guided_choice": (None,), "guided_grammar": (None,),
}


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers
        super().__init__(message)


def _error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class BodyLimitMiddleware:
    """Reject request bodies over ``max_bytes`` with 413, with or without Content-Length."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = length is not None and length.isdigit() and int(length) > self.max_bytes
        body, more = b"", True
        if not too_big:
            while more:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                body += msg.get("body", b"")
                more = msg.get("more_body", False)
                if len(body) > self.max_bytes:
                    too_big = True
                    break
        if too_big:
            resp = JSONResponse(_error_body(f"request body is larger than {self.max_bytes} bytes",
                                            "invalid_request_error", code="request_too_large"), status_code=413)
            return await resp(scope, receive, send)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _decoding(req: SamplingFields, max_tokens: int | None, default_max_tokens: int, limit: int) -> DecodingParams:
    requested = max_tokens if max_tokens is not None else min(default_max_tokens, limit)
    if requested > limit:
        raise APIError(400, f"max_tokens={requested} is above this server's limit of {limit}", param="max_tokens")
    temperature = 1.0 if req.temperature is None else req.temperature  # OpenAI default: sample at 1.0
    params = DecodingParams(
        max_new_tokens=requested, do_sample=temperature > 0, temperature=temperature or 1.0,
        top_p=req.top_p if req.top_p is not None else 1.0, top_k=req.top_k or None,
        repetition_penalty=req.repetition_penalty or 1.0, no_repeat_ngram_size=req.no_repeat_ngram_size or 0,
        stop=list(req.stop or []), seed=req.seed)
    try:
        validate_decoding(params)
    except ConfigError as e:
        raise APIError(400, str(e)) from None
    return params


def check_options(req: Any) -> None:
    """400 for fields the server would otherwise ignore: unsupported options and unknown names."""
    for name, value in (req.model_extra or {}).items():
        if name in IGNORED_OPTIONS:
            continue
        if name in UNSUPPORTED_OPTIONS:
            if any(value == off and type(value) is type(off) or value is off for off in UNSUPPORTED_OPTIONS[name]):
                continue
            raise APIError(400, f"{name} is not supported by this server (it would be ignored, not applied); "
                                f"remove it from the request", param=name, code="unsupported_parameter")
        known = sorted(set(type(req).model_fields) | IGNORED_OPTIONS | set(UNSUPPORTED_OPTIONS))
        near = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean: {near[0]}?" if near else ""
        raise APIError(400, f"unknown field {name!r}.{hint} This server reads: {', '.join(sorted(type(req).model_fields))}",
                       param=name, code="unknown_parameter")


def check_limits(**limits: Any) -> None:
    for name, value in limits.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"must be an integer >= 1, got {value!r}", field=name)


class ClientGone(Exception):
    """The client disconnected before its reply was ready."""


async def _wait_disconnect(request: Request) -> None:
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            return


def create_app(backend: GenerationBackend, *, model_name: str, api_key: str | None = None,
               max_tokens_limit: int = 2048, default_max_tokens: int = 512, max_request_bytes: int = 1_000_000,
               max_batch_size: int = 16, max_queue: int = 256, max_prompts_per_request: int = 32,
               max_queued_tokens: int = 131_072) -> FastAPI:
    """Build the FastAPI app. The worker thread starts with the app and stops with it.

    ``max_prompts_per_request``: prompts one ``/v1/completions`` call may carry.
    ``max_queued_tokens``: prompt + ``max_tokens`` summed over all admitted, unfinished
    prompts; a request above it alone is a 400, one that does not fit now a 503.
    """
    check_limits(max_prompts_per_request=max_prompts_per_request, max_queued_tokens=max_queued_tokens,
                 max_queue=max_queue, max_tokens_limit=max_tokens_limit, max_request_bytes=max_request_bytes)
    # jobs of kind "logprobs" (echo, logprobs, token-id prompts) are scored by polyinstruct.infer.logprobs
    worker = BatchWorker(lp.LogprobBackend(backend), max_batch_size=max_batch_size, max_queue=max_queue,
                         max_queued_tokens=max_queued_tokens)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        yield
        worker.stop()

    app = FastAPI(title="polyinstruct", lifespan=lifespan)
    app.state.worker = worker
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_request_bytes)
    created = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(_req: Request, e: APIError) -> JSONResponse:
        return JSONResponse(_error_body(e.message, e.type, e.param, e.code), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, e: RequestValidationError) -> JSONResponse:
        problems, param = [], None
        for err in e.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            param = param or loc or None
            problems.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return JSONResponse(_error_body("invalid request: " + "; ".join(problems), "invalid_request_error", param),
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_error_body(str(e.detail), "invalid_request_error"), status_code=e.status_code)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise APIError(401, "invalid or missing API key (send 'Authorization: Bearer <key>')",
                           type="authentication_error", code="invalid_api_key")

    def check_model(name: str) -> None:
        if name != model_name:
            raise APIError(404, f"model {name!r} is not served here; this server serves {model_name!r}",
                           param="model", code="model_not_found")

    def check_context(count: Any, payload: Any, max_new: int) -> int:
        """Prompt tokens (estimated when the backend cannot count); 400 when prompt + max_tokens
        cannot fit the model (instead of garbage or a crash)."""
        ctx = getattr(backend, "context_length", None)
        if count is not None:
            n = len(count(payload))
        else:  # no tokenizer here: about 3 characters a token
            n = len(payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)) // 3 + 1
        if count is not None:
            try:
                check_fits(n, max_new, ctx)  # the same check as the browser chat and arena
            except ContextLengthError as e:
                raise APIError(400, e.reason, param="messages", code="context_length_exceeded") from None
        return n

    def admit(costs: list[int]) -> None:
        total = sum(costs)
        if total > max_queued_tokens:
            raise APIError(400, f"this request needs up to {total} tokens of work (prompt + max_tokens per prompt), "
                                f"over this server's limit of {max_queued_tokens}; send fewer prompts or a smaller "
                                f"max_tokens", param="max_tokens", code="request_too_large")

    def busy(e: QueueFullError) -> APIError:
        return APIError(503, f"server busy: {e}; retry later", type="server_error", headers={"Retry-After": "1"})

    async def run_jobs(request: Request, kind: str, payloads: list[Any], params: DecodingParams,
                       costs: list[int]) -> list[Generation]:
        """Queue every prompt (all or none) and wait; the client leaving cancels them."""
        admit(costs)
        try:
            jobs: list[Job] = worker.submit_many(kind, payloads, params, costs)
        except QueueFullError as e:
            raise busy(e) from None
        gathered = asyncio.ensure_future(asyncio.gather(*(asyncio.wrap_future(j.future) for j in jobs)))
        gone = asyncio.ensure_future(_wait_disconnect(request))
        try:
            done, _ = await asyncio.wait({gathered, gone}, return_when=asyncio.FIRST_COMPLETED)
            if gathered in done:
                return gathered.result()
            raise ClientGone
        except BaseException as e:
            for j in jobs:  # the client left, a prompt failed, or the server is stopping: drop the rest
                j.cancel()
            if isinstance(e, (ClientGone, asyncio.CancelledError, APIError)):
                raise
            raise APIError(500, f"generation failed: {e}", type="server_error") from None
        finally:
            gone.cancel()
            if not gathered.done():
                gathered.cancel()

    def usage(prompt: int, completion: int) -> dict[str, int]:
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def sse(obj: Any) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    def stream_response(kind: str, payload: Any, params: DecodingParams, chunk: Any, include_usage: bool,
                        cost: int):
        loop = asyncio.get_running_loop()
        admit([cost])
        try:
            job = worker.submit_stream(kind, payload, params, loop, cost=cost)
        except QueueFullError as e:
            raise busy(e) from None

        async def events() -> AsyncIterator[str]:
            try:
                first = chunk(None, None, first=True)
                if first is not None:
                    yield sse(first)
                while True:
                    item = await job.stream_queue.get()
                    if is_end(item):
                        break
                    if isinstance(item, Exception):
                        yield sse(_error_body(f"generation failed: {item}", "server_error"))
                        break
                    yield sse(chunk(item, None))
                gen = job.result.get("generation")
                yield sse(chunk(None, gen.finish_reason if gen else "stop"))
                if include_usage and gen is not None:
                    yield sse({**chunk(None, None, usage_only=True),
                               "usage": usage(gen.prompt_tokens, gen.completion_tokens)})
                yield "data: [DONE]\n\n"
            finally:
                job.cancel()  # client gone or done: stop generating, or never start

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def need_logprobs(what: str, param: str | None = None) -> None:
        if not lp.supports_logprobs(backend):
            raise APIError(400, f"{what} is not supported by backend {getattr(backend, 'name', '?')!r}: it needs the "
                                f"model in this process (--backend hf)", param=param, code="unsupported_parameter")

    def tokenizer() -> Any:
        tok = getattr(backend, "tokenizer", None)
        if tok is None:
            raise APIError(404, f"backend {getattr(backend, 'name', '?')!r} has no tokenizer here", code="not_found")
        return tok

    def check_ids(ids: list[int], param: str) -> None:
        vocab = len(tokenizer())
        bad = next((i for i, t in enumerate(ids) if not 0 <= t < vocab), None)
        if bad is not None:
            raise APIError(400, f"token id {ids[bad]} at position {bad} is outside the vocabulary (0..{vocab - 1})",
                           param=param)

    def completion_logprobs(g: lp.ScoredGeneration) -> dict[str, Any]:
        return {"tokens": g.tokens, "token_logprobs": g.token_logprobs, "top_logprobs": g.top_logprobs,
                "text_offset": g.text_offset}

    def chat_logprobs(g: lp.ScoredGeneration, top: int) -> dict[str, Any]:
        tok = tokenizer()

        def entry(t: str, v: float) -> dict[str, Any]:
            return {"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))}

        content = []
        for t, v, alts in zip(g.tokens, g.token_logprobs, g.top_ids):
            content.append({**entry(t, v), "top_logprobs": [entry(tok.decode([i]), a) for i, a in (alts or [])[:top]]})
        return {"content": content}

    @app.get("/tokenizer_info", dependencies=[Depends(check_key)])
    async def tokenizer_info() -> dict:
        """vLLM's tokenizer description (lm-eval's remote tokenizer reads it)."""
        tok = tokenizer()
        fmt = getattr(backend, "prompt_format", None)
        # the chat template only when it is what /v1/chat/completions renders with
        template = getattr(tok, "chat_template", None) if getattr(fmt, "name", None) == "tokenizer" else None
        return {"tokenizer_class": type(tok).__name__, "eos_token": tok.eos_token, "bos_token": tok.bos_token,
                "pad_token": tok.pad_token, "unk_token": tok.unk_token, "chat_template": template,
                "model_max_length": getattr(backend, "context_length", None),
                "add_bos_token": getattr(tok, "add_bos_token", None)}

    @app.post("/tokenize", dependencies=[Depends(check_key)])
    async def tokenize(req: TokenizeRequest) -> dict:
        tok = tokenizer()
        if req.model is not None:
            check_model(req.model)
        if req.messages is not None:
            if not hasattr(backend, "encode_messages"):
                raise APIError(400, "this backend cannot render chat messages here", param="messages")
            ids = list(backend.encode_messages([{"role": m.role, "content": m.text()} for m in req.messages]))
        else:
            ids = list(tok(req.prompt, add_special_tokens=req.add_special_tokens)["input_ids"])
        return {"count": len(ids), "max_model_len": getattr(backend, "context_length", None), "tokens": ids}

    @app.post("/detokenize", dependencies=[Depends(check_key)])
    async def detokenize(req: DetokenizeRequest) -> dict:
        if req.model is not None:
            check_model(req.model)
        check_ids(req.tokens, "tokens")
        return {"prompt": tokenizer().decode(req.tokens)}

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name, "queued": worker.queued}

    @app.get("/v1/models", dependencies=[Depends(check_key)])
    async def models() -> dict:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                            "owned_by": "polyinstruct"}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(check_key)])
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
        check_model(req.model)
        check_options(req)
        if req.top_logprobs and not req.logprobs:
            raise APIError(400, "top_logprobs is not supported without logprobs: true", param="top_logprobs")
        if req.logprobs:
            need_logprobs("logprobs", "logprobs")
        max_tokens = req.max_completion_tokens or req.max_tokens
        params = _decoding(req, max_tokens, default_max_tokens, max_tokens_limit)
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        cost = check_context(getattr(backend, "encode_messages", None), messages, params.max_new_tokens)
        cost += params.max_new_tokens
        rid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if req.stream:
            def chunk(piece: str | None, finish: str | None, first: bool = False, usage_only: bool = False) -> dict:
                base = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": model_name}
                if usage_only:
                    return {**base, "choices": []}
                delta = {"role": "assistant", "content": ""} if first else ({"content": piece} if piece else {})
                return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

            include = bool((req.stream_options or {}).get("include_usage"))
            return stream_response("chat", messages, params, chunk, include, cost)
        try:
            if req.logprobs:
                job = lp.ScoreJob(list(backend.encode_messages(messages)), params.max_new_tokens, echo=False,
                                  top=req.top_logprobs or 0)
                gen, = await run_jobs(request, "logprobs", [job], params, [cost])
            else:
                gen, = await run_jobs(request, "chat", [messages], params, [cost])
        except ClientGone:
            return Response(status_code=499)  # nobody is listening any more
        return {"id": rid, "object": "chat.completion", "created": now, "model": model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                             "finish_reason": gen.finish_reason,
                             "logprobs": chat_logprobs(gen, req.top_logprobs or 0) if req.logprobs else None}],
                "usage": usage(gen.prompt_tokens, gen.completion_tokens)}

    @app.post("/v1/completions", dependencies=[Depends(check_key)])
    async def completions(req: CompletionRequest, request: Request) -> Any:
        check_model(req.model)
        check_options(req)
        if not hasattr(backend, "generate_text"):
            raise APIError(400, f"backend {backend.name!r} only supports chat; use /v1/chat/completions")
        if len(req.prompt) > max_prompts_per_request:
            raise APIError(400, f"{len(req.prompt)} prompts in one request; this server takes at most "
                                f"{max_prompts_per_request} (send them in several requests)", param="prompt",
                           code="too_many_prompts")
        rid, now = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if req.echo or req.logprobs is not None or req.token_ids:
            return await scored_completions(req, request, rid, now)
        params = _decoding(req, req.max_tokens, min(16, max_tokens_limit), max_tokens_limit)
        costs = [check_context(getattr(backend, "_encode", None), p, params.max_new_tokens) + params.max_new_tokens
                 for p in req.prompt]
        if req.stream:
            def chunk(piece: str | None, finish: str | None, first: bool = False, usage_only: bool = False):
                base = {"id": rid, "object": "text_completion", "created": now, "model": model_name}
                if first:
                    return None
                if usage_only:
                    return {**base, "choices": []}
                return {**base, "choices": [{"index": 0, "text": piece or "", "logprobs": None,
                                             "finish_reason": finish}]}

            include = bool((req.stream_options or {}).get("include_usage"))
            return stream_response("text", req.prompt[0], params, chunk, include, costs[0])
        try:
            gens = await run_jobs(request, "text", list(req.prompt), params, costs)
        except ClientGone:
            return Response(status_code=499)
        return {"id": rid, "object": "text_completion", "created": now, "model": model_name,
                "choices": [{"index": i, "text": g.text, "logprobs": None, "finish_reason": g.finish_reason}
                            for i, g in enumerate(gens)],
                "usage": usage(sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens))}

    async def scored_completions(req: CompletionRequest, request: Request, rid: str, now: int) -> Any:
        """echo / logprobs / token-id prompts: exact ids in, scored tokens out (vLLM's semantics)."""
        need_logprobs("echo, logprobs and token-id prompts")
        max_new = req.max_tokens if req.max_tokens is not None else min(16, max_tokens_limit)
        params = _decoding(req, max(1, max_new), min(16, max_tokens_limit), max_tokens_limit)
        ctx = getattr(backend, "context_length", None)
        jobs, costs = [], []
        for i, p in enumerate(req.prompt):
            if isinstance(p, list):
                check_ids(p, f"prompt.{i}")
                ids, text = list(p), None
            else:
                ids, text = list(backend._encode(p)), p
            if ctx and len(ids) + max_new > ctx:
                raise APIError(400, f"prompt {i} ({len(ids)} tokens) + max_tokens ({max_new}) exceeds the model's "
                                    f"context length of {ctx}", param="prompt", code="context_length_exceeded")
            if not ids:
                raise APIError(400, f"prompt {i} encodes to no tokens", param="prompt")
            jobs.append(lp.ScoreJob(ids, max_new, echo=req.echo, top=req.logprobs, prompt_text=text))
            costs.append(len(ids) + max_new)
        try:
            gens = await run_jobs(request, "logprobs", jobs, params, costs)
        except ClientGone:
            return Response(status_code=499)
        return {"id": rid, "object": "text_completion", "created": now, "model": model_name,
                "choices": [{"index": i, "text": g.text,
                             "logprobs": completion_logprobs(g) if req.logprobs is not None else None,
                             "finish_reason": g.finish_reason} for i, g in enumerate(gens)],
                "usage": usage(sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens))}

    return app


def serve(model: str | GenerationBackend, host: str = "127.0.0.1", port: int = 8000, *, backend: str = "hf",
          model_name: str | None = None, api_key: str | None = None, max_tokens_limit: int = 2048,
          batch_size: int = 16, max_request_bytes: int = 1_000_000, backend_kwargs: dict[str, Any] | None = None,
          log_level: str = "info", max_prompts_per_request: int = 32, max_queued_tokens: int = 131_072,
          max_queue: int = 256) -> None:
    """Load ``model`` and serve it until interrupted (blocking)."""
    import uvicorn

    check_limits(max_prompts_per_request=max_prompts_per_request, max_queued_tokens=max_queued_tokens,
                 max_queue=max_queue, max_tokens_limit=max_tokens_limit, max_request_bytes=max_request_bytes)
    if isinstance(model, str):
        from polyinstruct.infer import load_backend

        kw = dict(backend_kwargs or {})
        if backend == "hf":
            kw.setdefault("batch_size", batch_size)
        gen_backend = load_backend({"backend": backend, "model": model, **kw})
        name = model_name or getattr(gen_backend, "model_name", None) or model
    else:
        gen_backend, name = model, model_name or getattr(model, "model_name", None) or model.name
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        log.warning("serving on %s without an API key: anyone who can reach this address can use the model", host)
    app = create_app(gen_backend, model_name=name, api_key=api_key, max_tokens_limit=max_tokens_limit,
                     max_request_bytes=max_request_bytes, max_batch_size=batch_size, max_queue=max_queue,
                     max_prompts_per_request=max_prompts_per_request, max_queued_tokens=max_queued_tokens)
    log.info("serving %r on http://%s:%d/v1", name, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
