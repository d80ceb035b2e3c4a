"""``POST /v1/chat/completions``: chat replies, streamed or whole, with optional logprobs."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from polyinstruct.infer import logprobs as lp
from polyinstruct.infer.serve_core import APIError, ClientGone, ServerContext, check_options, decoding, usage
from polyinstruct.infer.serve_schemas import ChatCompletionRequest


def chat_logprobs(ctx: ServerContext, g: lp.ScoredGeneration, top: int) -> dict[str, Any]:
    tok = ctx.tokenizer()

    def entry(t: str, v: float) -> dict[str, Any]:
        return {"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))}

    content = []
    for t, v, alts in zip(g.tokens, g.token_logprobs, g.top_ids):
        content.append({**entry(t, v), "top_logprobs": [entry(tok.decode([i]), a) for i, a in (alts or [])[:top]]})
    return {"content": content}


def chat_router(ctx: ServerContext) -> APIRouter:
    router = APIRouter()
    backend = ctx.backend

    @router.post("/v1/chat/completions", dependencies=[Depends(ctx.check_key)])
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Any:
        ctx.check_model(req.model)
        check_options(req)
        if req.top_logprobs and not req.logprobs:
            raise APIError(400, "top_logprobs is not supported without logprobs: true", param="top_logprobs")
        if req.logprobs:
            ctx.need_logprobs("logprobs", "logprobs")
        max_tokens = req.max_completion_tokens or req.max_tokens
        params = decoding(req, max_tokens, ctx.default_max_tokens, ctx.max_tokens_limit)
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        cost = ctx.check_context(getattr(backend, "encode_messages", None), messages, params.max_new_tokens)
        cost += params.max_new_tokens
        rid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if req.stream:
            def chunk(piece: str | None, finish: str | None, first: bool = False, usage_only: bool = False) -> dict:
                base = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": ctx.model_name}
                if usage_only:
                    return {**base, "choices": []}
                delta = {"role": "assistant", "content": ""} if first else ({"content": piece} if piece else {})
                return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

            include = bool((req.stream_options or {}).get("include_usage"))
            return ctx.stream_response("chat", messages, params, chunk, include, cost)
        try:
            if req.logprobs:
                job = lp.ScoreJob(list(backend.encode_messages(messages)), params.max_new_tokens, echo=False,
                                  top=req.top_logprobs or 0)
                gen, = await ctx.run_jobs(request, "logprobs", [job], params, [cost])
            else:
                gen, = await ctx.run_jobs(request, "chat", [messages], params, [cost])
        except ClientGone:
            return Response(status_code=499)  # nobody is listening any more
        return {"id": rid, "object": "chat.completion", "created": now, "model": ctx.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                             "finish_reason": gen.finish_reason,
                             "logprobs": chat_logprobs(ctx, gen, req.top_logprobs or 0) if req.logprobs else None}],
                "usage": usage(gen.prompt_tokens, gen.completion_tokens)}

    return router
