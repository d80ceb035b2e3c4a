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
with the model in process (``hf``); others answer 400. Token-id prompts of a model whose
tokenizer adds BOS get BOS first when they lack it (``add_bos="auto"``; ``/v1/models`` says so).

The routes are split by concern: ``serve_meta`` (health, models, tokenizer), ``serve_chat``,
``serve_completions``; what they share (errors, limits, the worker) is ``serve_core``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from polyinstruct.infer import logprobs as lp
from polyinstruct.infer.backend import GenerationBackend
from polyinstruct.infer.serve_chat import chat_router
from polyinstruct.infer.serve_completions import completions_router
from polyinstruct.infer.serve_core import (  # noqa: F401 - re-exported: the server's public names
    ADD_BOS_CHOICES, IGNORED_OPTIONS, UNSUPPORTED_OPTIONS, APIError, BodyLimitMiddleware, ClientGone,
    ServerContext, bos_to_prepend, check_limits, check_options, error_body,
)
from polyinstruct.infer.serve_meta import meta_router
from polyinstruct.infer.worker import BatchWorker

log = logging.getLogger(__name__)


def create_app(backend: GenerationBackend, *, model_name: str, api_key: str | None = None,
               max_tokens_limit: int = 2048, default_max_tokens: int = 512, max_request_bytes: int = 1_000_000,
               max_batch_size: int = 16, max_queue: int = 256, max_prompts_per_request: int = 32,
               max_queued_tokens: int = 131_072, add_bos: str = "auto") -> FastAPI:
    """Build the FastAPI app. The worker thread starts with the app and stops with it.

    ``max_prompts_per_request``: prompts one ``/v1/completions`` call may carry.
    ``max_queued_tokens``: prompt + ``max_tokens`` summed over all admitted, unfinished
    prompts; a request above it alone is a 400, one that does not fit now a 503.
    ``add_bos``: ``auto`` puts BOS before token-id prompts lacking it when the tokenizer adds
    BOS to text; ``never`` uses ids exactly as given.
    """
    check_limits(max_prompts_per_request=max_prompts_per_request, max_queued_tokens=max_queued_tokens,
                 max_queue=max_queue, max_tokens_limit=max_tokens_limit, max_request_bytes=max_request_bytes)
    # jobs of kind "logprobs" (echo, logprobs, token-id prompts) are scored by polyinstruct.infer.logprobs
    worker = BatchWorker(lp.LogprobBackend(backend), max_batch_size=max_batch_size, max_queue=max_queue,
                         max_queued_tokens=max_queued_tokens)
    ctx = ServerContext(backend=backend, worker=worker, model_name=model_name, api_key=api_key,
                        max_tokens_limit=max_tokens_limit, default_max_tokens=default_max_tokens,
                        max_prompts_per_request=max_prompts_per_request, max_queued_tokens=max_queued_tokens,
                        bos_id=bos_to_prepend(backend, add_bos))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        yield
        worker.stop()

    app = FastAPI(title="polyinstruct", lifespan=lifespan)
    app.state.worker = worker
    app.state.context = ctx
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_request_bytes)

    @app.exception_handler(APIError)
    async def _api_error(_req: Request, e: APIError) -> JSONResponse:
        return JSONResponse(error_body(e.message, e.type, e.param, e.code), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, e: RequestValidationError) -> JSONResponse:
        problems, param = [], None
        for err in e.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            param = param or loc or None
            problems.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return JSONResponse(error_body("invalid request: " + "; ".join(problems), "invalid_request_error", param),
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(e.detail), "invalid_request_error"), status_code=e.status_code)

    for router in (meta_router(ctx), chat_router(ctx), completions_router(ctx)):
        app.include_router(router)
    return app


def serve(model: str | GenerationBackend, host: str = "127.0.0.1", port: int = 8000, *, backend: str = "hf",
          model_name: str | None = None, api_key: str | None = None, max_tokens_limit: int = 2048,
          batch_size: int = 16, max_request_bytes: int = 1_000_000, backend_kwargs: dict[str, Any] | None = None,
          log_level: str = "info", max_prompts_per_request: int = 32, max_queued_tokens: int = 131_072,
          max_queue: int = 256, add_bos: str = "auto", threads: int | None = None) -> None:
    """Load ``model`` and serve it until interrupted (blocking). ``threads``: CPU threads torch uses."""
    import uvicorn

    check_limits(max_prompts_per_request=max_prompts_per_request, max_queued_tokens=max_queued_tokens,
                 max_queue=max_queue, max_tokens_limit=max_tokens_limit, max_request_bytes=max_request_bytes)
    if threads is not None:
        set_threads(threads)
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
                     max_prompts_per_request=max_prompts_per_request, max_queued_tokens=max_queued_tokens,
                     add_bos=add_bos)
    log.info("serving %r on http://%s:%d/v1", name, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def set_threads(threads: int) -> None:
    """CPU threads for the model's matrix products (``serve --threads``)."""
    import torch

    check_limits(threads=threads)
    torch.set_num_threads(threads)
