"""The server's descriptive routes: ``/health``, ``/v1/models`` and the tokenizer endpoints
(``/tokenizer_info``, ``/tokenize``, ``/detokenize``) that lm-eval's remote tokenizer reads."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from polyinstruct.infer.serve_core import APIError, ServerContext
from polyinstruct.infer.serve_schemas import DetokenizeRequest, TokenizeRequest


def meta_router(ctx: ServerContext) -> APIRouter:
    router = APIRouter()
    backend = ctx.backend
    keyed = [Depends(ctx.check_key)]

    @router.get("/tokenizer_info", dependencies=keyed)
    async def tokenizer_info() -> dict:
        """vLLM's tokenizer description (lm-eval's remote tokenizer reads it)."""
        tok = ctx.tokenizer()
        fmt = getattr(backend, "prompt_format", None)
        # the chat template only when it is what /v1/chat/completions renders with
        template = getattr(tok, "chat_template", None) if getattr(fmt, "name", None) == "tokenizer" else None
        return {"tokenizer_class": type(tok).__name__, "eos_token": tok.eos_token, "bos_token": tok.bos_token,
                "pad_token": tok.pad_token, "unk_token": tok.unk_token, "chat_template": template,
                "model_max_length": getattr(backend, "context_length", None),
                "add_bos_token": getattr(tok, "add_bos_token", None),
                "bos_prepended_to_token_prompts": ctx.bos_id is not None}

    @router.post("/tokenize", dependencies=keyed)
    async def tokenize(req: TokenizeRequest) -> dict:
        tok = ctx.tokenizer()
        if req.model is not None:
            ctx.check_model(req.model)
        if req.messages is not None:
            if not hasattr(backend, "encode_messages"):
                raise APIError(400, "this backend cannot render chat messages here", param="messages")
            ids = list(backend.encode_messages([{"role": m.role, "content": m.text()} for m in req.messages]))
        else:
            ids = list(tok(req.prompt, add_special_tokens=req.add_special_tokens)["input_ids"])
        return {"count": len(ids), "max_model_len": getattr(backend, "context_length", None), "tokens": ids}

    @router.post("/detokenize", dependencies=keyed)
    async def detokenize(req: DetokenizeRequest) -> dict:
        if req.model is not None:
            ctx.check_model(req.model)
        ctx.check_ids(req.tokens, "tokens")
        return {"prompt": ctx.tokenizer().decode(req.tokens)}

    @router.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": ctx.model_name, "queued": ctx.worker.queued}

    @router.get("/v1/models", dependencies=keyed)
    async def models() -> dict:
        card: dict[str, Any] = {"id": ctx.model_name, "object": "model", "created": ctx.created,
                                "owned_by": "polyinstruct",
                                "max_model_len": getattr(backend, "context_length", None)}
        if getattr(backend, "tokenizer", None) is not None:
            # how token-id prompts are read (docs/inference.md, "BOS"): clients need not add BOS themselves
            card["bos_token_id"] = backend.tokenizer.bos_token_id
            card["bos_prepended_to_token_prompts"] = ctx.bos_id is not None
        return {"object": "list", "data": [card]}

    return router
