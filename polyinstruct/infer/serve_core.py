"""What every route of the server shares: errors, request limits, the decoding settings of a
request, and ``ServerContext`` (the backend, its worker and the checks each route runs).

The routes live with their concern: ``serve_meta`` (health, models, tokenizer endpoints),
``serve_chat`` (``/v1/chat/completions``) and ``serve_completions`` (``/v1/completions``);
``serve.create_app`` wires them together.
"""

from __future__ import annotations

import asyncio
import difflib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from polyinstruct.errors import ConfigError
from polyinstruct.infer import logprobs as lp
from polyinstruct.infer.backend import DecodingParams, Generation, GenerationBackend
from polyinstruct.infer.context import ContextLengthError, check_fits
from polyinstruct.infer.decoding import validate_decoding
from polyinstruct.infer.serve_schemas import SamplingFields
from polyinstruct.infer.worker import BatchWorker, Job, QueueFullError, is_end

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
ADD_BOS_CHOICES = ("auto", "never")


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers
        super().__init__(message)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
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
            resp = JSONResponse(error_body(f"request body is larger than {self.max_bytes} bytes",
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


def decoding(req: SamplingFields, max_tokens: int | None, default_max_tokens: int, limit: int) -> DecodingParams:
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


async def wait_disconnect(request: Request) -> None:
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            return


def bos_to_prepend(backend: Any, add_bos: str) -> int | None:
    """The BOS id the server puts before token-id prompts that lack it, or None.

    ``auto``: when the model's tokenizer adds BOS to text by default (Gemma, Llama), a token-id
    prompt is scored as the model was trained and as text prompts are (lm-eval's
    ``local-completions`` sends ids without BOS); ``never``: ids are used exactly as given (vLLM)."""
    if add_bos not in ADD_BOS_CHOICES:
        raise ConfigError(f"must be one of {', '.join(ADD_BOS_CHOICES)}, got {add_bos!r}", field="add_bos")
    tok = getattr(backend, "tokenizer", None)
    if add_bos == "never" or tok is None:
        return None
    from polyinstruct.templates.tokenize import tokenizer_adds_bos

    return tok.bos_token_id if tokenizer_adds_bos(tok) else None


@dataclass
class ServerContext:
    """The served model and the checks its routes share."""

    backend: GenerationBackend
    worker: BatchWorker
    model_name: str
    api_key: str | None
    max_tokens_limit: int
    default_max_tokens: int
    max_prompts_per_request: int
    max_queued_tokens: int
    bos_id: int | None = None  # prepended to token-id prompts that lack it (see bos_to_prepend)
    created: int = field(default_factory=lambda: int(time.time()))
    _vocab: int | None = None

    # -- access --------------------------------------------------------------------
    def check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise APIError(401, "invalid or missing API key (send 'Authorization: Bearer <key>')",
                           type="authentication_error", code="invalid_api_key")

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(404, f"model {name!r} is not served here; this server serves {self.model_name!r}",
                           param="model", code="model_not_found")

    # -- admission -----------------------------------------------------------------
    def check_context(self, count: Any, payload: Any, max_new: int) -> int:
        """Prompt tokens (estimated when the backend cannot count); 400 when prompt + max_tokens
        cannot fit the model (instead of garbage or a crash)."""
        ctx = getattr(self.backend, "context_length", None)
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

    def admit(self, costs: list[int]) -> None:
        total = sum(costs)
        if total > self.max_queued_tokens:
            raise APIError(400, f"this request needs up to {total} tokens of work (prompt + max_tokens per prompt), "
                                f"over this server's limit of {self.max_queued_tokens}; send fewer prompts or a "
                                f"smaller max_tokens", param="max_tokens", code="request_too_large")

    @staticmethod
    def busy(e: QueueFullError) -> APIError:
        return APIError(503, f"server busy: {e}; retry later", type="server_error", headers={"Retry-After": "1"})

    # -- running -------------------------------------------------------------------
    async def run_jobs(self, request: Request, kind: str, payloads: list[Any], params: DecodingParams,
                       costs: list[int]) -> list[Generation]:
        """Queue every prompt (all or none) and wait; the client leaving cancels them."""
        self.admit(costs)
        try:
            jobs: list[Job] = self.worker.submit_many(kind, payloads, params, costs)
        except QueueFullError as e:
            raise self.busy(e) from None
        gathered = asyncio.ensure_future(asyncio.gather(*(asyncio.wrap_future(j.future) for j in jobs)))
        gone = asyncio.ensure_future(wait_disconnect(request))
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

    def stream_response(self, kind: str, payload: Any, params: DecodingParams, chunk: Any, include_usage: bool,
                        cost: int) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        self.admit([cost])
        try:
            job = self.worker.submit_stream(kind, payload, params, loop, cost=cost)
        except QueueFullError as e:
            raise self.busy(e) from None

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
                        yield sse(error_body(f"generation failed: {item}", "server_error"))
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

    # -- the model in process ------------------------------------------------------
    def need_logprobs(self, what: str, param: str | None = None) -> None:
        if not lp.supports_logprobs(self.backend):
            raise APIError(400, f"{what} is not supported by backend {getattr(self.backend, 'name', '?')!r}: it "
                                f"needs the model in this process (--backend hf)", param=param,
                           code="unsupported_parameter")

    def tokenizer(self) -> Any:
        tok = getattr(self.backend, "tokenizer", None)
        if tok is None:
            raise APIError(404, f"backend {getattr(self.backend, 'name', '?')!r} has no tokenizer here",
                           code="not_found")
        return tok

    def check_ids(self, ids: list[int], param: str) -> None:
        if self._vocab is None:
            self._vocab = len(self.tokenizer())  # once: len() of a 262k-entry tokenizer is not free
        vocab = self._vocab
        bad = next((i for i, t in enumerate(ids) if not 0 <= t < vocab), None)
        if bad is not None:
            raise APIError(400, f"token id {ids[bad]} at position {bad} is outside the vocabulary (0..{vocab - 1})",
                           param=param)


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
