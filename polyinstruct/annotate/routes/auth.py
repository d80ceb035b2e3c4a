"""Log in and out, with limits on failed logins and on concurrent password hashing.

Policy (docs/annotation.md, "Login limits"): after ``login_account_failures`` failed
logins for one account name, or ``login_address_failures`` from one client address,
within ``login_window_s`` seconds, further logins for that name or from that address get
a 429 with ``Retry-After`` until the oldest counted failure leaves the window (a success
clears the account's count). Password checks (argon2id, about 64 MiB each) run at most
``login_hash_slots`` at a time; at most ``login_hash_queue`` logins wait for a slot and
the rest get a 429 at once, so a flood of logins cannot exhaust the server's memory or
its worker threads. A failed or refused login answers after ``login_refusal_delay_s`` (an
asynchronous sleep that holds no thread), which slows each flooding connection's loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from polyinstruct.annotate.web import TooMany, WebContext, WebLimits

MAX_TRACKED = 10_000  # names/addresses with recent failures kept in memory


class LoginGuard:
    """Counts failed logins per account and per address; bounds concurrent password checks."""

    def __init__(self, limits: WebLimits, clock=time.monotonic):
        self.limits, self.clock = limits, clock
        self._fails: dict[str, dict[str, deque[float]]] = {"account": {}, "address": {}}
        self._lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        # Password checks run in their own threads at the lowest CPU priority (Linux: a thread's nice
        # value, inherited by argon2's lane threads), so annotators' pages go first during a flood.
        self.pool = ThreadPoolExecutor(max_workers=max(1, limits.login_hash_slots), thread_name_prefix="login-hash",
                                       initializer=_lowest_priority)

    def _recent(self, kind: str, key: str, now: float) -> deque[float]:
        dq = self._fails[kind].get(key)
        if dq is None:
            return deque()
        while dq and dq[0] <= now - self.limits.login_window_s:
            dq.popleft()
        if not dq:
            del self._fails[kind][key]
        return dq

    def check(self, account: str, address: str) -> None:
        """Raise ``TooMany`` when the account or the address has used up its failures."""
        now = self.clock()
        with self._lock:
            for kind, key, limit in (("account", account, self.limits.login_account_failures),
                                     ("address", address, self.limits.login_address_failures)):
                dq = self._recent(kind, key, now)
                if len(dq) >= limit:
                    wait = dq[len(dq) - limit] + self.limits.login_window_s - now
                    who = f"account {account!r}" if kind == "account" else "your address"
                    raise TooMany(f"Too many failed logins for {who}: try again in {int(wait) + 1} s.", int(wait) + 1)

    def failed(self, account: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for kind, key in (("account", account), ("address", address)):
                table = self._fails[kind]
                table.setdefault(key, deque(maxlen=1000)).append(now)
                if len(table) > MAX_TRACKED:  # forget the least recently added name/address
                    table.pop(next(iter(table)))

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._fails["account"].pop(account, None)

    async def hashing(self):
        """An async context: a password-check slot, or ``TooMany`` when too many already wait."""
        return _Slot(self)


def _lowest_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: normal priority
        pass


class _Slot:
    def __init__(self, guard: LoginGuard):
        self.guard = guard

    async def __aenter__(self):
        g = self.guard
        if g._slots is None:
            g._slots = asyncio.Semaphore(g.limits.login_hash_slots)
        if g._slots.locked() and g._waiting >= g.limits.login_hash_queue:
            raise TooMany("The server is busy checking other logins: try again in a few seconds.", 2)
        g._waiting += 1
        try:
            await g._slots.acquire()
        finally:
            g._waiting -= 1
        return self

    async def __aexit__(self, *exc):
        self.guard._slots.release()


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    guard = LoginGuard(ctx.limits)
    r.login_guard = guard  # type: ignore[attr-defined] - tests and benches read its state

    def login_page(request: Request, error: str | None, status: int, retry_after: int | None = None) -> HTMLResponse:
        resp = ctx.html("login.html", request, status=status, title="Log in", error=error)
        if retry_after:
            resp.headers["Retry-After"] = str(retry_after)
        return resp

    @r.get("/", include_in_schema=False)
    def root(request: Request):
        return RedirectResponse("/annotate" if ctx.current(request) else "/login", status_code=303)

    @r.get("/login", response_class=HTMLResponse)
    def login_form(request: Request):
        return ctx.html("login.html", request, title="Log in", error=None)

    @r.post("/login", response_class=HTMLResponse)
    async def login(request: Request):
        form = await request.form()
        ctx.check_csrf(request, form.get("csrf"))
        name, password = str(form.get("username", "")).strip()[:64], str(form.get("password", ""))[:1024]
        address = request.client.host if request.client else "unknown"
        if not name or not password:
            return login_page(request, "Wrong name or password.", 401)
        try:
            guard.check(name, address)
            async with await guard.hashing():
                guard.check(name, address)  # failures may have come in while this one waited
                row = await asyncio.get_running_loop().run_in_executor(guard.pool, ctx.store.check_login, name,
                                                                       password)
        except TooMany as e:
            await asyncio.sleep(ctx.limits.login_refusal_delay_s)  # slows a flooding client's loop, costs nothing here
            return login_page(request, str(e), 429, e.retry_after)
        if row is None:
            guard.failed(name, address)
            await asyncio.sleep(ctx.limits.login_refusal_delay_s)
            return login_page(request, "Wrong name or password.", 401)
        guard.succeeded(name)
        await run_in_threadpool(ctx.start_session, request, row["name"])
        return RedirectResponse("/annotate", status_code=303)

    @r.post("/logout")
    async def logout(request: Request):
        form = await request.form()
        ctx.check_csrf(request, form.get("csrf"))
        await run_in_threadpool(ctx.end_session, request)
        return RedirectResponse("/login", status_code=303)

    return r
