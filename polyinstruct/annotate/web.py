"""What every router of the annotation app shares (docs/annotation.md): the page templates,
server-side sessions and CSRF, the limits, and strict parsing of what the page sends.

Sessions: the signed cookie (Starlette's ``SessionMiddleware``) carries only a random
session token and the CSRF token; the token must name a live row of the store's
``sessions`` table, and the account's name and role are read from the database on every
request. Logging out deletes the row; a new password or role (``annotate add-user NAME
--replace``) deletes all of the account's rows, so an old cookie stops working at once.

Parsing: every field the page sends is checked here or in ``engines.params_from`` and a
bad one is a 400 naming it (ids past SQLite's 64-bit range, settings that are not an
object, non-finite numbers, JSON nested past ``MAX_JSON_DEPTH``), never a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from polyinstruct.annotate.engines import Engine
from polyinstruct.annotate.store import MAX_ROW_ID, PREFERENCES, Store
from polyinstruct.errors import ConfigError
from polyinstruct.lang.codes import normalize_code

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
MAX_REQUEST_BYTES = 256_000
MAX_CHAT_MESSAGES = 64
MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class WebLimits:
    """Per-request and per-user limits (docs/annotation.md, "Limits")."""

    max_prompt_chars: int = 32_000  # all turns and the system prompt of one chat/arena request
    arena_rounds_per_hour: int = 60  # per annotator
    login_account_failures: int = 5  # failed logins per account name per window
    login_address_failures: int = 30  # failed logins per client address per window
    login_window_s: float = 900.0
    login_hash_slots: int = 2  # password checks (argon2, ~64 MiB each) running at once
    login_hash_queue: int = 8  # logins waiting for a slot; more get a 429 at once
    login_refusal_delay_s: float = 1.0  # a failed or refused login answers after this long (no thread held)


class NotLoggedIn(Exception):
    pass


class Forbidden(Exception):
    pass


class TooMany(Exception):
    """A limit was hit: 429 with ``Retry-After``."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


@dataclass
class Account:
    name: str
    is_admin: bool


def templates():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["PREFERENCES"] = PREFERENCES
    return env


def lang_attr(code: str | None) -> str:
    c = normalize_code(code)
    return "" if c == "und" else c


def parse_id(raw: Any, field: str) -> int:
    """A row id from a form, path or JSON: digits only, within SQLite's 64-bit integers."""
    s = str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
    if not s.isascii() or not s.isdigit() or len(s) > 19 or int(s) > MAX_ROW_ID:
        raise ConfigError(f"must be a whole number from 0 to {MAX_ROW_ID}, got {str(raw)[:40]!r}", field=field)
    return int(s)


def parse_small_int(raw: Any, field: str, allowed: set[int] | dict[int, Any]) -> int:
    """A choice such as a preference (-2..2) or an acceptability mark (0/1), strictly."""
    v: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        v = raw
    elif isinstance(raw, float) and raw.is_integer():
        v = int(raw)
    elif isinstance(raw, str) and len(raw) <= 4 and raw.strip().lstrip("-").isdigit():
        v = int(raw.strip())
    if v is None or v not in allowed:
        raise ConfigError(f"must be one of {sorted(allowed)}, got {str(raw)[:40]!r}", field=field)
    return v


def _depth_ok(obj: Any, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return False
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return True


class WebContext:
    """The store, the engines, the templates and the helpers the routers use."""

    def __init__(self, store: Store, engines: dict[str, Engine], *, lease_s: float, session_max_age: int,
                 limits: WebLimits):
        self.store, self.engines, self.lease_s = store, engines, lease_s
        self.session_max_age, self.limits = session_max_age, limits
        self.env = templates()

    # --- sessions and CSRF ----------------------------------------------------------------------
    def csrf_token(self, request: Request) -> str:
        tok = request.session.get("csrf")
        if not tok:
            tok = request.session["csrf"] = secrets.token_urlsafe(32)
        return tok

    def check_csrf(self, request: Request, sent: Any) -> None:
        expected = request.session.get("csrf")
        if not expected or not sent or not hmac.compare_digest(str(sent).encode(), str(expected).encode()):
            raise Forbidden("the form's security token is missing or stale; reload the page and try again")

    def current(self, request: Request) -> Account | None:
        """The logged-in account (looked up in the sessions table once per request), else None."""
        if hasattr(request.state, "account"):
            return request.state.account
        token = request.session.get("sid")
        row = self.store.session_user(token) if token else None
        if token and row is None:
            request.session.pop("sid", None)  # revoked or expired: the cookie is just "not logged in"
        account = Account(row["name"], row["is_admin"]) if row else None
        request.state.account = account
        return account

    def user(self, request: Request) -> str:
        account = self.current(request)
        if account is None:
            raise NotLoggedIn()
        return account.name

    def admin(self, request: Request) -> str:
        account = self.current(request)
        if account is None:
            raise NotLoggedIn()
        if not account.is_admin:
            raise Forbidden("this page is for admins")
        return account.name

    def start_session(self, request: Request, name: str) -> None:
        old = request.session.get("sid")
        if old:
            self.store.end_session(old)
        request.session.clear()
        request.session.update(sid=self.store.new_session(name, max_age_s=self.session_max_age),
                               csrf=secrets.token_urlsafe(32))
        if hasattr(request.state, "account"):
            del request.state.account

    def end_session(self, request: Request) -> None:
        self.store.end_session(request.session.get("sid"))
        request.session.clear()
        request.state.account = None

    # --- pages ----------------------------------------------------------------------------------
    def page(self, name: str, request: Request, **ctx: Any) -> str:
        account = self.current(request)
        return self.env.get_template(name).render(user=account.name if account else None,
                                                  admin=bool(account and account.is_admin),
                                                  csrf=self.csrf_token(request), engines=sorted(self.engines), **ctx)

    # --- JSON API -------------------------------------------------------------------------------
    async def json_body(self, request: Request) -> dict[str, Any]:
        self.check_csrf(request, request.headers.get("x-csrf-token"))
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except RecursionError:
            raise ConfigError(f"the JSON body is nested too deeply (at most {MAX_JSON_DEPTH} levels)",
                              field="body") from None
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise ConfigError("the request body must be a JSON object", field="body")
        if not _depth_ok(body, MAX_JSON_DEPTH):
            raise ConfigError(f"the JSON body is nested too deeply (at most {MAX_JSON_DEPTH} levels)", field="body")
        return body

    def clean_messages(self, body: dict[str, Any]) -> list[dict[str, str]]:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs or len(msgs) > MAX_CHAT_MESSAGES:
            raise ConfigError(f"must be a list of 1 to {MAX_CHAT_MESSAGES} turns", field="messages")
        out = []
        system = body.get("system")
        if system is not None and not isinstance(system, str):
            raise ConfigError("must be a string", field="system")
        system = (system or "").strip()
        if system:
            out.append({"role": "system", "content": system})
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") or not isinstance(
                    m.get("content"), str):
                raise ConfigError("each turn needs role user|assistant and a content string", field=f"messages.{i}")
            out.append({"role": m["role"], "content": m["content"]})
        if out[-1]["role"] != "user":
            raise ConfigError("the last turn must be the user's", field="messages")
        size = sum(len(m["content"]) for m in out)
        if size > self.limits.max_prompt_chars:
            raise ConfigError(f"the prompt has {size} characters; at most {self.limits.max_prompt_chars} "
                              "per request", field="messages")
        return out

    @staticmethod
    def ndjson(pieces: AsyncIterator[str], on_done: Callable[[str], None] | None = None) -> StreamingResponse:
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

    @staticmethod
    def bad_request(e: Exception, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=status)

    def html(self, name: str, request: Request, status: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(self.page(name, request, **ctx), status_code=status)
