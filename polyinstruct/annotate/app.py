"""The annotation, chat and arena web app (FastAPI + Jinja2, docs/annotation.md).

Safe by default: binds 127.0.0.1 (see ``serve``); every page but the login needs a
server-side session (a random token in Starlette's signed, ``SameSite=Strict`` cookie that
must name a live row of the store's ``sessions`` table: revoked on logout and on a new
password or role); every POST carries the session's CSRF token (form field or
``X-CSRF-Token`` header); templates autoescape, and the page's script only ever
writes model text with ``textContent``; a Content-Security-Policy allows no inline
script. Annotators see "A" and "B", never model names or other annotators' answers.
The routes live in ``annotate.routes`` (auth, annotation, chat, arena, admin); what they
share (sessions, CSRF, limits, strict parsing) in ``annotate.web``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from polyinstruct.annotate.engines import Engine
from polyinstruct.annotate.store import DEFAULT_LEASE_S, Store
from polyinstruct.annotate.web import (
    HERE,
    MAX_REQUEST_BYTES,
    Forbidden,
    NotLoggedIn,
    TooMany,
    WebContext,
    WebLimits,
)
from polyinstruct.errors import MissingDependencyError

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


def _require_web_deps() -> None:
    missing = []
    for mod, pkg in (("itsdangerous", "itsdangerous"), ("python_multipart", "python-multipart"), ("argon2", "argon2-cffi")):
        try:
            __import__(mod)
        except ImportError:
            missing.append(pkg)
    if missing:
        raise MissingDependencyError(f"the annotation app needs {', '.join(missing)}: pip install 'polyinstruct[web]'")


def create_app(store: Store, engines: dict[str, Engine] | None = None, *, lease_s: float = DEFAULT_LEASE_S,
               https_only: bool = False, session_max_age: int = 12 * 3600, allowed_hosts: list[str] | None = None,
               limits: WebLimits | None = None):
    """The app over one store; ``engines`` (name -> Engine) feed the chat and the arena.

    ``allowed_hosts``: Host headers to accept (``serve`` passes the loopback names when it
    binds to loopback, so a DNS-rebinding page cannot talk to the app). ``limits``: prompt
    size, arena rounds and login limits (``WebLimits`` defaults, docs/annotation.md).
    """
    _require_web_deps()
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles
    from starlette.middleware.sessions import SessionMiddleware

    from polyinstruct.annotate.routes import admin, annotation, arena, auth, chat
    from polyinstruct.infer.serve import BodyLimitMiddleware

    ctx = WebContext(store, dict(engines or {}), lease_s=lease_s, session_max_age=session_max_age,
                     limits=limits or WebLimits())
    app = FastAPI(title="polyinstruct annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.web = ctx
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(SessionMiddleware, secret_key=store.secret_key(), session_cookie="polyinstruct_session",
                       max_age=session_max_age, same_site="strict", https_only=https_only)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_REQUEST_BYTES)
    if allowed_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        resp = await call_next(request)
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/static/"):
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.exception_handler(NotLoggedIn)
    async def _login_needed(request: Request, _e: NotLoggedIn):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "log in first"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, e: Forbidden):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(e)}, status_code=403)
        return ctx.html("message.html", request, status=403, title="Forbidden", message=str(e))

    @app.exception_handler(TooMany)
    async def _too_many(request: Request, e: TooMany):
        headers = {"Retry-After": str(e.retry_after)}
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(e)}, status_code=429, headers=headers)
        return HTMLResponse(ctx.page("message.html", request, title="Too many requests", message=str(e)),
                            status_code=429, headers=headers)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    for module in (auth, annotation, chat, arena, admin):
        routes = module.router(ctx)
        app.include_router(routes)
        setattr(app.state, f"{module.__name__.rsplit('.', 1)[-1]}_router", routes)
    return app


@contextmanager
def running(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its base URL (tests, benches)."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="auto"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the annotation server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve(store: Store, engines: dict[str, Engine] | None = None, *, host: str = "127.0.0.1", port: int = 8765,
          lease_s: float = DEFAULT_LEASE_S, https_only: bool = False, log_level: str = "info") -> None:
    """Run the app until interrupted (blocking)."""
    import uvicorn

    if host not in LOOPBACK:
        log.warning("serving on %s: anyone who can reach it sees the login page; put it behind HTTPS "
                    "(--https-only) before sending passwords over a network", host)
    hosts = ["127.0.0.1", "localhost", "[::1]", "::1"] if host in LOOPBACK else None
    app = create_app(store, engines, lease_s=lease_s, https_only=https_only, allowed_hosts=hosts)
    log.info("annotation app on http://%s:%d (database %s)", host, port, store.path)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
