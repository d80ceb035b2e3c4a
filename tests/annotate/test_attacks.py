"""The web app under attack (issue 24): a template error must not hang a model, prompts past the
context are refused up front, sessions are revocable, the arena gives one answer per side with
fixed settings, logins are limited, and malformed fields are 400s naming the field."""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from polyinstruct.annotate.app import create_app, running
from polyinstruct.annotate.engines import Engine
from polyinstruct.annotate.web import WebLimits
from tests.annotate.conftest import PASSWORDS, CountingBackend, NoSystemBackend, RandomBackend, ScriptedBackend
from tests.annotate.test_app import csrf_of, logged_in

MSG = [{"role": "user", "content": "hi"}]


class RecordingBackend(ScriptedBackend):
    def __init__(self, tokens, delay=0.0):
        super().__init__(tokens, delay)
        self.params = []

    def stream(self, conversation, params):
        self.params.append(params)
        return super().stream(conversation, params)


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def client_login(url: str, name: str) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=url, timeout=10)
    tok = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": name, "password": PASSWORDS[name], "csrf": tok})
    assert r.status_code == 303, r.text
    return c, csrf_of(c.get("/annotate").text)


# --- one request must not hang a model ---------------------------------------------------------
def test_a_template_error_gives_the_model_back(store):
    engine = Engine("m", NoSystemBackend(["still", " here"], delay=0))
    with running(create_app(store, {"m": engine})) as url:
        c, tok = client_login(url, "alice")
        h = {"X-CSRF-Token": tok}
        r = c.post("/api/chat", json={"engine": "m", "messages": MSG, "system": "Be brief."}, headers=h)
        assert "System role not supported" in lines(r.text)[-1]["error"]
        # Before the fix the lock stayed held and this waited forever (httpx times out after 10 s).
        r = c.post("/api/chat", json={"engine": "m", "messages": MSG}, headers=h)
        assert lines(r.text) == [{"text": "still"}, {"text": " here"}, {"done": True}]
        assert not engine.lock.locked()


def test_prompts_past_the_context_or_the_size_cap_are_refused_before_the_model_runs(store):
    backend = CountingBackend(["ok"], delay=0)
    app = create_app(store, {"m": Engine("m", backend), "n": Engine("n", CountingBackend(["ok"], delay=0))},
                     limits=WebLimits(max_prompt_chars=500))
    c, tok = logged_in(app)
    h = {"X-CSRF-Token": tok}
    long = [{"role": "user", "content": "x" * 80}]
    r = c.post("/api/chat", json={"engine": "m", "messages": long, "settings": {"max_tokens": 30}}, headers=h)
    assert r.status_code == 400
    assert r.json()["error"] == ("messages: prompt (80 tokens) + max_tokens (30) exceeds the model's context "
                                 "length of 100")
    r = c.post("/api/arena", json={"messages": long, "settings": {"max_tokens": 30}}, headers=h)
    assert r.status_code == 400 and "context length of 100" in r.json()["error"]
    huge = [{"role": "user", "content": "y" * 501}]
    r = c.post("/api/chat", json={"engine": "m", "messages": huge}, headers=h)
    assert r.status_code == 400 and "501 characters; at most 500" in r.json()["error"]
    r = c.post("/api/chat", json={"engine": "m", "messages": long, "settings": {"max_tokens": 20}}, headers=h)
    assert lines(r.text) == [{"text": "ok"}, {"done": True}]  # 80 + 20 fits exactly


def test_the_context_check_is_the_one_serve_uses():
    from polyinstruct.infer import serve_core
    from polyinstruct.infer.context import ContextLengthError, check_fits

    assert serve_core.check_fits is check_fits
    check_fits(90, 10, 100)
    with pytest.raises(ContextLengthError, match="prompt \\(91 tokens\\) \\+ max_tokens \\(10\\)"):
        check_fits(91, 10, 100)
    check_fits(10**6, 10, None)  # unknown context: the endpoint checks for itself


# --- sessions ----------------------------------------------------------------------------------
def test_sessions_are_revoked_on_logout_password_and_role_change(store):
    app = create_app(store)
    c, tok = logged_in(app, "alice")
    old = c.cookies.get("polyinstruct_session")
    assert c.post("/logout", data={"csrf": tok}, follow_redirects=False).status_code == 303
    replay = TestClient(app, base_url="http://127.0.0.1", cookies={"polyinstruct_session": old})
    assert replay.get("/annotate", follow_redirects=False).headers["location"] == "/login"

    # A role change (add-user alice --replace without --admin) ends alice's sessions at once.
    c, _ = logged_in(app, "alice")
    assert c.get("/admin").status_code == 200
    store.add_annotator("alice", PASSWORDS["alice"], replace=True)
    r = c.get("/admin", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    c, _ = logged_in(app, "alice")
    assert c.get("/admin").status_code == 403  # logged in again: the role as stored now

    # A new password ends bob's sessions too.
    b, _ = logged_in(app, "bob")
    store.add_annotator("bob", "a-new-password", replace=True)
    assert b.get("/annotate", follow_redirects=False).headers["location"] == "/login"


# --- the arena ---------------------------------------------------------------------------------
def test_an_arena_side_is_never_rerolled_after_a_disconnect(store):
    engines = {"m1": Engine("m1", RandomBackend([], delay=0.05)), "m2": Engine("m2", RandomBackend([], delay=0.05))}
    with running(create_app(store, engines)) as url:
        c, tok = client_login(url, "carol")
        h = {"X-CSRF-Token": tok}
        rid = c.post("/api/arena", json={"messages": MSG}, headers=h).json()["round"]
        with c.stream("POST", f"/api/arena/{rid}/a", json={}, headers=h) as r:  # leave after the first piece
            first = json.loads(next(r.iter_lines()))["text"]
        full = "".join(e.get("text", "") for e in lines(c.post(f"/api/arena/{rid}/a", json={}, headers=h).text))
        assert full.startswith(first) and len(full.split()) == 8  # the same generation, followed to its end
        again = "".join(e.get("text", "") for e in lines(c.post(f"/api/arena/{rid}/a", json={}, headers=h).text))
        assert again == full
        b = "".join(e.get("text", "") for e in lines(c.post(f"/api/arena/{rid}/b", json={}, headers=h).text))
        assert c.post(f"/api/arena/{rid}/vote", json={"preference": 1, "accept_a": 1, "accept_b": 1},
                      headers=h).json() == {"stored": True}
    row = store.query("SELECT output_x, output_y, swapped FROM items WHERE id=?", (rid,))[0]
    assert {row["output_x"], row["output_y"]} == {full, b}


def test_arena_settings_are_fixed_per_round_and_always_sampled_with_one_seed(store):
    m1, m2 = RecordingBackend(["one"]), RecordingBackend(["two"])
    app = create_app(store, {"m1": Engine("m1", m1), "m2": Engine("m2", m2)})
    c, tok = logged_in(app, "carol")
    h = {"X-CSRF-Token": tok}
    seeds = []
    for _ in range(2):
        rid = c.post("/api/arena", json={"messages": MSG, "settings": {"temperature": 0, "max_tokens": 40}},
                     headers=h).json()["round"]
        c.post(f"/api/arena/{rid}/a", json={"settings": {"max_tokens": 1}}, headers=h)  # steering: ignored
        c.post(f"/api/arena/{rid}/b", json={"settings": {"temperature": 0}}, headers=h)
        pa, pb = m1.params[-1], m2.params[-1]
        assert pa == pb  # both sides: the same settings and the same seed
        assert pa.max_new_tokens == 40 and pa.do_sample and pa.temperature == 0.7 and pa.seed is not None
        seeds.append(pa.seed)
    assert seeds[0] != seeds[1]  # a fresh seed per round


def test_arena_rounds_are_capped_per_annotator(store):
    app = create_app(store, {"m1": Engine("m1", ScriptedBackend(["a"], 0)), "m2": Engine("m2", ScriptedBackend(["b"], 0))},
                     limits=WebLimits(arena_rounds_per_hour=3))
    c, tok = logged_in(app, "carol")
    h = {"X-CSRF-Token": tok}
    codes = [c.post("/api/arena", json={"messages": MSG}, headers=h).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    bob, btok = logged_in(app, "bob")  # per annotator
    assert bob.post("/api/arena", json={"messages": MSG}, headers={"X-CSRF-Token": btok}).status_code == 200


# --- login flood -------------------------------------------------------------------------------
def _try_login(c, name, password):
    tok = csrf_of(c.get("/login").text)
    return c.post("/login", data={"username": name, "password": password, "csrf": tok}, follow_redirects=False)


def test_failed_logins_are_limited_per_account_and_per_address(store):
    app = create_app(store, limits=WebLimits(login_account_failures=3, login_address_failures=5,
                                                  login_refusal_delay_s=0))
    c = TestClient(app, base_url="http://127.0.0.1")
    assert [_try_login(c, "bob", "wrong-wrong").status_code for _ in range(3)] == [401, 401, 401]
    r = _try_login(c, "bob", PASSWORDS["bob"])  # even the right password waits now
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "Too many failed logins for account &#39;bob&#39;" in r.text
    assert _try_login(c, "carol", PASSWORDS["carol"]).status_code == 303  # another account is fine
    assert [_try_login(c, "carol", "nope-nope").status_code for _ in range(2)] == [401, 401]
    r = _try_login(c, "alice", PASSWORDS["alice"])  # 5 failures from this address: the address waits
    assert r.status_code == 429 and "your address" in r.text


def test_password_checks_are_bounded_under_a_flood(store, monkeypatch):
    running_now, peak, lock = [0], [0], threading.Lock()
    real = store.check_login

    def slow_check(name, password):
        with lock:
            running_now[0] += 1
            peak[0] = max(peak[0], running_now[0])
        try:
            time.sleep(0.2)
            return real(name, password)
        finally:
            with lock:
                running_now[0] -= 1

    monkeypatch.setattr(store, "check_login", slow_check)
    app = create_app(store, limits=WebLimits(login_account_failures=1000, login_address_failures=1000,
                                             login_hash_slots=2, login_hash_queue=4))
    with running(app) as url:
        def attempt(i):
            with httpx.Client(base_url=url, timeout=30) as c:
                return _try_login(c, f"nobody{i}", "wrong-password").status_code

        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(attempt, range(20)))
    assert peak[0] <= 2
    assert codes.count(429) >= 10 and set(codes) <= {401, 429}


# --- malformed input ---------------------------------------------------------------------------
def test_malformed_fields_are_400s_naming_the_field(store):
    engines = {"m1": Engine("m1", ScriptedBackend(["a"], 0)), "m2": Engine("m2", ScriptedBackend(["b"], 0))}
    app = create_app(store, engines)
    c, tok = logged_in(app, "carol")
    h = {"X-CSRF-Token": tok, "Content-Type": "application/json"}
    r = c.post("/annotate", data={"csrf": tok, "item_id": "9" * 20, "accept_a": "1", "accept_b": "1",
                                  "preference": "0"})
    assert r.status_code == 400 and "Not saved: item_id: must be a whole number" in r.text
    r = c.post("/annotate", data={"csrf": tok, "item_id": "1", "accept_a": "1e400", "accept_b": "1",
                                  "preference": "0"})
    assert r.status_code == 400 and "accept_a: must be one of [0, 1]" in r.text
    cases = [
        ("/api/arena/" + "9" * 20 + "/a", b"{}", "round"),
        ("/api/arena/" + "9" * 20 + "/vote", b'{"preference": 0, "accept_a": 1, "accept_b": 1}', "round"),
        ("/api/chat", b'{"engine": "m1", "messages": [{"role": "user", "content": "x"}], "settings": [1]}',
         "settings"),
        ("/api/chat", b'{"engine": "m1", "messages": [{"role": "user", "content": "x"}], "settings": "hot"}',
         "settings"),
        ("/api/chat", b'{"engine": "m1", "messages": [{"role": "user", "content": "x"}], '
                      b'"settings": {"max_tokens": Infinity}}', "settings.max_tokens"),
        ("/api/chat", b'{"engine": "m1", "messages": [{"role": "user", "content": "x"}], '
                      b'"settings": {"max_tokens": 1e400}}', "settings.max_tokens"),
        ("/api/chat", b'{"engine": "m1", "messages": [{"role": "user", "content": "x"}], '
                      b'"settings": {"temperature": NaN}}', "settings.temperature"),
        ("/api/arena", b'{"messages": [{"role": "user", "content": "x"}], "settings": {"top_p": 1e400}}',
         "settings.top_p"),
        ("/api/arena/1/vote", b'{"preference": 0, "accept_a": 1e400, "accept_b": 1}', "accept_a"),
        ("/api/arena/1/vote", b'{"preference": [0], "accept_a": 1, "accept_b": 1}', "preference"),
        ("/api/chat", b'{"engine": "m1", "messages": ' + b"[" * 50000 + b"]" * 50000 + b"}", "body"),
        ("/api/chat", b'{"engine": "m1", "messages": [{"role": "user", "content": "x"}], "settings": '
                      + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", "body"),
        ("/api/chat", b'{"engine": ["m1"], "messages": []}', "engine"),
        ("/api/chat", b'{"engine": "m1", "messages": [{"role": "user", "content": "x"}], "system": {"a": 1}}',
         "system"),
    ]
    for path, body, field in cases:
        r = c.post(path, content=body, headers=h)
        assert r.status_code == 400, (path, body[:80], r.status_code, r.text[:200])
        assert r.json()["error"].startswith(f"{field}: "), (path, body[:80], r.json())
    assert re.search(r"round: must be a whole number", c.post("/api/arena/abc/a", content=b"{}", headers=h).text)
