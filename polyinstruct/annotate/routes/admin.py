"""The admins' progress page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from polyinstruct.annotate.web import WebContext


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()

    @r.get("/admin", response_class=HTMLResponse)
    def admin(request: Request):
        ctx.admin(request)  # the role as stored now, not as it was at login
        return ctx.html("admin.html", request, title="Progress", progress=ctx.store.progress())

    return r
