"""``POST /v1/completions``: text continuations, and for evaluators (vLLM's semantics) echo,
logprobs and token-id prompts, scored by ``polyinstruct.infer.logprobs``.

Token-id prompts of a model whose tokenizer adds BOS get it put first when they lack it
(``serve --add-bos auto``, the default): lm-eval's ``local-completions`` sends ids without BOS
and Gemma scores garbage without it. The added BOS conditions the prompt but is never echoed,
so the reply's tokens are still exactly the ids sent."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from polyinstruct.infer import logprobs as lp
from polyinstruct.infer.serve_core import APIError, ClientGone, ServerContext, check_options, decoding, usage
from polyinstruct.infer.serve_schemas import CompletionRequest


def completion_logprobs(g: lp.ScoredGeneration) -> dict[str, Any]:
    return {"tokens": g.tokens, "token_logprobs": g.token_logprobs, "top_logprobs": g.top_logprobs,
            "text_offset": g.text_offset}


def completions_router(ctx: ServerContext) -> APIRouter:
    router = APIRouter()
    backend = ctx.backend
    limit = ctx.max_tokens_limit

    @router.post("/v1/completions", dependencies=[Depends(ctx.check_key)])
    async def completions(req: CompletionRequest, request: Request) -> Any:
        ctx.check_model(req.model)
        check_options(req)
        if not hasattr(backend, "generate_text"):
            raise APIError(400, f"backend {backend.name!r} only supports chat; use /v1/chat/completions")
        if len(req.prompt) > ctx.max_prompts_per_request:
            raise APIError(400, f"{len(req.prompt)} prompts in one request; this server takes at most "
                                f"{ctx.max_prompts_per_request} (send them in several requests)", param="prompt",
                           code="too_many_prompts")
        rid, now = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if req.echo or req.logprobs is not None or req.token_ids:
            return await scored_completions(req, request, rid, now)
        params = decoding(req, req.max_tokens, min(16, limit), limit)
        costs = [ctx.check_context(getattr(backend, "_encode", None), p, params.max_new_tokens) + params.max_new_tokens
                 for p in req.prompt]
        if req.stream:
            def chunk(piece: str | None, finish: str | None, first: bool = False, usage_only: bool = False):
                base = {"id": rid, "object": "text_completion", "created": now, "model": ctx.model_name}
                if first:
                    return None
                if usage_only:
                    return {**base, "choices": []}
                return {**base, "choices": [{"index": 0, "text": piece or "", "logprobs": None,
                                             "finish_reason": finish}]}

            include = bool((req.stream_options or {}).get("include_usage"))
            return ctx.stream_response("text", req.prompt[0], params, chunk, include, costs[0])
        try:
            gens = await ctx.run_jobs(request, "text", list(req.prompt), params, costs)
        except ClientGone:
            return Response(status_code=499)
        return {"id": rid, "object": "text_completion", "created": now, "model": ctx.model_name,
                "choices": [{"index": i, "text": g.text, "logprobs": None, "finish_reason": g.finish_reason}
                            for i, g in enumerate(gens)],
                "usage": usage(sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens))}

    async def scored_completions(req: CompletionRequest, request: Request, rid: str, now: int) -> Any:
        """echo / logprobs / token-id prompts: exact ids in, scored tokens out (vLLM's semantics)."""
        ctx.need_logprobs("echo, logprobs and token-id prompts")
        max_new = req.max_tokens if req.max_tokens is not None else min(16, limit)
        params = decoding(req, max(1, max_new), min(16, limit), limit)
        context = getattr(backend, "context_length", None)
        jobs, costs, added = [], [], 0
        for i, p in enumerate(req.prompt):
            shown_from = 0
            if isinstance(p, list):
                ctx.check_ids(p, f"prompt.{i}")
                ids, text = list(p), None
                if ctx.bos_id is not None and ids and ids[0] != ctx.bos_id:
                    ids, shown_from = [ctx.bos_id, *ids], 1
                    added += 1
            else:
                ids, text = list(backend._encode(p)), p
            if context and len(ids) + max_new > context:
                raise APIError(400, f"prompt {i} ({len(ids)} tokens) + max_tokens ({max_new}) exceeds the model's "
                                    f"context length of {context}", param="prompt", code="context_length_exceeded")
            if not ids:
                raise APIError(400, f"prompt {i} encodes to no tokens", param="prompt")
            jobs.append(lp.ScoreJob(ids, max_new, echo=req.echo, top=req.logprobs, prompt_text=text,
                                    shown_from=shown_from))
            costs.append(len(ids) + max_new)
        try:
            gens = await ctx.run_jobs(request, "logprobs", jobs, params, costs)
        except ClientGone:
            return Response(status_code=499)
        body = {"id": rid, "object": "text_completion", "created": now, "model": ctx.model_name,
                "choices": [{"index": i, "text": g.text,
                             "logprobs": completion_logprobs(g) if req.logprobs is not None else None,
                             "finish_reason": g.finish_reason} for i, g in enumerate(gens)],
                "usage": usage(sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens))}
        if added:  # say so: the client's ids were read with BOS first
            from fastapi.responses import JSONResponse

            return JSONResponse(body, headers={"X-Polyinstruct-BOS-Prepended": str(added)})
        return body

    return router
