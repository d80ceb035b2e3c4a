"""The browser chat: one model, streamed replies."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from polyinstruct.annotate.engines import params_from
from polyinstruct.annotate.web import WebContext
from polyinstruct.errors import ConfigError


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()

    @r.get("/chat", response_class=HTMLResponse)
    def chat_page(request: Request):
        ctx.user(request)
        return ctx.html("chat.html", request, title="Chat")

    @r.post("/api/chat")
    async def api_chat(request: Request):
        ctx.user(request)
        try:
            body = await ctx.json_body(request)
            name = body.get("engine")
            if not isinstance(name, str) or name not in ctx.engines:
                raise ConfigError(f"unknown model {str(name)[:40]!r}; this app serves "
                                  f"{', '.join(sorted(ctx.engines)) or 'none'}", field="engine")
            engine = ctx.engines[name]
            messages, params = ctx.clean_messages(body), params_from(body.get("settings"))
            # template and context checks before the model is locked: a refused prompt never holds it
            await run_in_threadpool(engine.check_prompt, messages, params)
        except ConfigError as e:
            return ctx.bad_request(e)
        return ctx.ndjson(engine.stream(messages, params))

    return r
