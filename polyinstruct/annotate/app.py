"""The annotation, chat and arena web app (FastAPI + Jinja2, docs/annotation.md).

Safe by default: binds 127.0.0.1 (see ``serve``); every page but the login needs a
session (Starlette's signed-cookie ``SessionMiddleware``, key kept in the database,
``SameSite=Strict``); every POST carries the session's CSRF token (form field or
``X-CSRF-Token`` header); templates autoescape, and the page's script only ever
writes model text with ``textContent``; a Content-Security-Policy allows no inline
script. Annotators see "A" and "B", never model names or other annotators' answers.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse

from polyinstruct.annotate.engines import Engine, params_from
from polyinstruct.annotate.store import DEFAULT_LEASE_S, PREFERENCES, Store, StoreError
from polyinstruct.errors import ConfigError, MissingDependencyError
from polyinstruct.lang.codes import normalize_code

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
MAX_REQUEST_BYTES = 256_000
MAX_CHAT_MESSAGES = 64


class _NotLoggedIn(Exception):
    pass


class _Forbidden(Exception):
    pass


def _require_web_deps() -> None:
    missing = []
    for mod, pkg in (("itsdangerous", "itsdangerous"), ("python_multipart", "python-multipart"), ("argon2", "argon2-cffi")):
        try:
            __import__(mod)
        except ImportError:
            missing.append(pkg)
    if missing:
        raise MissingDependencyError(f"the annotation app needs {', '.join(missing)}: pip install 'polyinstruct[web]'")


def _templates():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["PREFERENCES"] = PREFERENCES
    return env


def _lang_attr(code: str | None) -> str:
    c = normalize_code(code)
    return "" if c == "und" else c


def create_app(store: Store, engines: dict[str, Engine] | None = None, *, lease_s: float = DEFAULT_LEASE_S,
               https_only: bool = False, session_max_age: int = 12 * 3600, allowed_hosts: list[str] | None = None):
    """The app over one store; ``engines`` (name -> Engine) feed the chat and the arena.

    ``allowed_hosts``: Host headers to accept (``serve`` passes the loopback names when it
    binds to loopback, so a DNS-rebinding page cannot talk to the app).
    """
    _require_web_deps()
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware.sessions import SessionMiddleware

    from polyinstruct.infer.serve import BodyLimitMiddleware

    engines = dict(engines or {})
    env = _templates()
    app = FastAPI(title="polyinstruct annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
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

    @app.exception_handler(_NotLoggedIn)
    async def _login_needed(request: Request, _e: _NotLoggedIn):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "log in first"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(_Forbidden)
    async def _forbidden(request: Request, e: _Forbidden):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(e)}, status_code=403)
        return HTMLResponse(page("message.html", request, title="Forbidden", message=str(e)), status_code=403)

    def csrf_token(request: Request) -> str:
        tok = request.session.get("csrf")
        if not tok:
            tok = request.session["csrf"] = secrets.token_urlsafe(32)
        return tok

    def check_csrf(request: Request, sent: str | None) -> None:
        expected = request.session.get("csrf")
        if not expected or not sent or not hmac.compare_digest(str(sent).encode(), expected.encode()):
            raise _Forbidden("the form's security token is missing or stale; reload the page and try again")

    def user(request: Request) -> str:
        name = request.session.get("user")
        if not name:
            raise _NotLoggedIn()
        return name

    def page(name: str, request: Request, **ctx: Any) -> str:
        return env.get_template(name).render(user=request.session.get("user"), admin=request.session.get("admin"),
                                             csrf=csrf_token(request), engines=sorted(engines), **ctx)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/")
    def root(request: Request):
        return RedirectResponse("/annotate" if request.session.get("user") else "/login", status_code=303)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request):
        return page("login.html", request, title="Log in", error=None)

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request):
        form = await request.form()
        check_csrf(request, form.get("csrf"))
        name, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        row = await run_in_threadpool(store.check_login, name, password) if name and password else None
        if row is None:
            return HTMLResponse(page("login.html", request, title="Log in", error="Wrong name or password."),
                                status_code=401)
        request.session.clear()
        request.session.update(user=row["name"], admin=row["is_admin"], csrf=secrets.token_urlsafe(32))
        return RedirectResponse("/annotate", status_code=303)

    @app.post("/logout")
    async def logout(request: Request):
        form = await request.form()
        check_csrf(request, form.get("csrf"))
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    def annotate_page(request: Request, name: str, *, notice: str | None = None, error: str | None = None,
                      status: int = 200):
        item = store.next_item(name, lease_s=lease_s)
        prog = store.progress(name)["annotators"][name]
        return HTMLResponse(page("annotate.html", request, title="Annotate", item=item, progress=prog,
                                 lang=_lang_attr(item.language) if item else "", notice=notice, error=error),
                            status_code=status)

    @app.get("/annotate", response_class=HTMLResponse)
    def annotate(request: Request, saved: str | None = None):
        name = user(request)
        notice = {"1": "Saved.", "dup": "You had already judged that item; nothing was counted twice."}.get(saved or "")
        return annotate_page(request, name, notice=notice)

    @app.post("/annotate")
    async def submit(request: Request):
        name = user(request)
        form = await request.form()
        check_csrf(request, form.get("csrf"))
        try:
            item_id = int(str(form.get("item_id", "")))
            values = {}
            for field in ("accept_a", "accept_b", "preference"):
                raw = form.get(field)
                if raw in (None, ""):
                    raise StoreError(f"choose a value for {field.replace('_', ' ')}")
                values[field] = int(str(raw))
            stored = await run_in_threadpool(lambda: store.submit(name, item_id, comment=str(form.get("comment") or ""),
                                                                  **values))
        except (StoreError, ValueError) as e:
            message = f"Not saved: {e}"
            return await run_in_threadpool(lambda: annotate_page(request, name, error=message, status=400))
        return RedirectResponse(f"/annotate?saved={'1' if stored else 'dup'}", status_code=303)

    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request):
        user(request)
        if not request.session.get("admin"):
            raise _Forbidden("this page is for admins")
        return page("admin.html", request, title="Progress", progress=store.progress())

    # --- chat and arena --------------------------------------------------------------------------
    @app.get("/chat", response_class=HTMLResponse)
    def chat_page(request: Request):
        user(request)
        return page("chat.html", request, title="Chat")

    @app.get("/arena", response_class=HTMLResponse)
    def arena_page(request: Request):
        user(request)
        return page("arena.html", request, title="Arena")

    async def json_body(request: Request) -> dict[str, Any]:
        check_csrf(request, request.headers.get("x-csrf-token"))
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ConfigError("the request body must be a JSON object")
        return body

    def clean_messages(body: dict[str, Any]) -> list[dict[str, str]]:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs or len(msgs) > MAX_CHAT_MESSAGES:
            raise ConfigError(f"messages must be a list of 1 to {MAX_CHAT_MESSAGES} turns", field="messages")
        out = []
        system = str(body.get("system") or "").strip()
        if system:
            out.append({"role": "system", "content": system})
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") or not isinstance(
                    m.get("content"), str):
                raise ConfigError("each turn needs role user|assistant and a content string", field=f"messages.{i}")
            out.append({"role": m["role"], "content": m["content"]})
        if out[-1]["role"] != "user":
            raise ConfigError("the last turn must be the user's", field="messages")
        return out

    def ndjson(pieces: AsyncIterator[str], on_done=None) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            text: list[str] = []
            try:
                async for piece in pieces:
                    text.append(piece)
                    yield json.dumps({"text": piece}, ensure_ascii=False) + "\n"
                if on_done is not None:
                    on_done("".join(text))
                yield json.dumps({"done": True}) + "\n"
            except Exception as e:  # noqa: BLE001 - the page shows it
                log.warning("generation failed: %s", e)
                yield json.dumps({"error": f"generation failed: {e}"}, ensure_ascii=False) + "\n"

        return StreamingResponse(events(), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def bad_request(e: Exception, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=status)

    @app.post("/api/chat")
    async def api_chat(request: Request):
        user(request)
        try:
            body = await json_body(request)
            name = str(body.get("engine", ""))
            if name not in engines:
                raise ConfigError(f"unknown model {name!r}; this app serves {', '.join(sorted(engines)) or 'none'}",
                                  field="engine")
            messages, params = clean_messages(body), params_from(body.get("settings") or {})
        except ConfigError as e:
            return bad_request(e)
        return ndjson(engines[name].stream(messages, params))

    @app.post("/api/arena")
    async def api_arena(request: Request):
        name = user(request)
        try:
            body = await json_body(request)
            if len(engines) < 2:
                raise ConfigError("the arena needs at least two models (--model NAME=... twice)")
            messages = clean_messages(body)
            params_from(body.get("settings") or {})
        except ConfigError as e:
            return bad_request(e)
        x, y = secrets.SystemRandom().sample(sorted(engines), 2)
        item = store.new_arena_item(name, messages, x, y)
        return {"round": item.id}

    @app.post("/api/arena/{round_id}/{side}")
    async def api_arena_side(request: Request, round_id: int, side: str):
        name = user(request)
        try:
            body = await json_body(request)
            if side == "vote":
                vote = {"accept_a": int(body.get("accept_a", -1)), "accept_b": int(body.get("accept_b", -1)),
                        "preference": int(body.get("preference", 99)), "comment": str(body.get("comment") or "")}
                stored = await run_in_threadpool(lambda: store.submit(name, round_id, **vote))
                return {"stored": stored}
            if side not in ("a", "b"):
                raise ConfigError("side must be a, b or vote", field="side")
            model, messages = store.arena_model(round_id, side, name)
            params = params_from(body.get("settings") or {})
        except (ConfigError, StoreError, ValueError, TypeError) as e:
            return bad_request(e)
        return ndjson(engines[model].stream(messages, params),
                      on_done=lambda text: store.set_output(round_id, side, text))

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
