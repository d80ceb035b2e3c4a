"""Blind pairwise annotation: the next item, and one judgment per submitted form."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from polyinstruct.annotate.store import PREFERENCES, StoreError
from polyinstruct.annotate.web import WebContext, lang_attr, parse_id, parse_small_int
from polyinstruct.errors import ConfigError


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()

    def annotate_page(request: Request, name: str, *, notice: str | None = None, error: str | None = None,
                      status: int = 200) -> HTMLResponse:
        item = ctx.store.next_item(name, lease_s=ctx.lease_s)
        prog = ctx.store.progress(name)["annotators"][name]
        return ctx.html("annotate.html", request, status=status, title="Annotate", item=item, progress=prog,
                        lang=lang_attr(item.language) if item else "", notice=notice, error=error)

    @r.get("/annotate", response_class=HTMLResponse)
    def annotate(request: Request, saved: str | None = None):
        name = ctx.user(request)
        notice = {"1": "Saved.", "dup": "You had already judged that item; nothing was counted twice."}.get(saved or "")
        return annotate_page(request, name, notice=notice)

    @r.post("/annotate")
    async def submit(request: Request):
        name = ctx.user(request)
        form = await request.form()
        ctx.check_csrf(request, form.get("csrf"))
        try:
            item_id = parse_id(form.get("item_id", ""), "item_id")
            values = {}
            for field, allowed in (("accept_a", {0, 1}), ("accept_b", {0, 1}), ("preference", PREFERENCES)):
                raw = form.get(field)
                if raw in (None, ""):
                    raise StoreError(f"choose a value for {field.replace('_', ' ')}")
                values[field] = parse_small_int(raw, field, allowed)
            comment = str(form.get("comment") or "")
            stored = await run_in_threadpool(lambda: ctx.store.submit(name, item_id, comment=comment, **values))
        except (StoreError, ConfigError) as e:
            message = f"Not saved: {e}"
            return await run_in_threadpool(lambda: annotate_page(request, name, error=message, status=400))
        return RedirectResponse(f"/annotate?saved={'1' if stored else 'dup'}", status_code=303)

    return r
