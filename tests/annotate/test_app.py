"""The web app's safety and APIs over HTTP (no browser): login, CSRF, escaping, blind pages, arena."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from polyinstruct.annotate.app import create_app
from polyinstruct.annotate.engines import Engine, params_from
from polyinstruct.cli import build_parser
from tests.annotate.conftest import PASSWORDS, ScriptedBackend


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def logged_in(app, name="alice") -> tuple[TestClient, str]:
    c = TestClient(app, base_url="http://127.0.0.1")
    tok = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": name, "password": PASSWORDS[name], "csrf": tok}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/annotate"
    page = c.get("/annotate").text
    return c, csrf_of(page)


def test_everything_needs_a_login_and_a_csrf_token(store):
    app = create_app(store)
    c = TestClient(app, base_url="http://127.0.0.1")
    for path in ("/annotate", "/chat", "/arena", "/admin"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    assert c.post("/api/chat", json={}).status_code == 401
    # Login without the form's token is refused, even with the right password.
    c.get("/login")
    assert c.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]}).status_code == 403
    tok = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": "alice", "password": "nope-nope", "csrf": tok})
    assert r.status_code == 401 and "Wrong name or password" in r.text

    c, tok = logged_in(app)
    cookie = c.cookies.get("polyinstruct_session")
    set_cookie = TestClient(app).get("/login").headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    item_id = re.search(r'name="item_id" value="(\d+)"', c.get("/annotate").text).group(1)
    form = {"item_id": item_id, "accept_a": "1", "accept_b": "1", "preference": "0"}
    assert c.post("/annotate", data=form).status_code == 403  # no token
    assert c.post("/annotate", data={**form, "csrf": "forged"}).status_code == 403
    assert store.export_rows() == []
    r = c.post("/annotate", data={**form, "csrf": tok}, follow_redirects=False)
    assert r.status_code == 303 and len(store.export_rows()) == 1
    # A tampered session cookie is just "not logged in".
    bad = TestClient(app, base_url="http://127.0.0.1", cookies={"polyinstruct_session": cookie[:-4] + "AAAA"})
    assert bad.get("/annotate", follow_redirects=False).headers["location"] == "/login"
    # Logging out ends the session.
    assert c.post("/logout", data={"csrf": tok}, follow_redirects=False).headers["location"] == "/login"
    assert c.get("/annotate", follow_redirects=False).status_code == 303


def test_pages_escape_model_text_hide_model_names_and_set_headers(store):
    app = create_app(store)
    c, tok = logged_in(app)
    texts = []
    while True:
        r = c.get("/annotate")
        assert "sys-a" not in r.text and "sys-b" not in r.text
        assert "Content-Security-Policy" in r.headers and "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
        m = re.search(r'name="item_id" value="(\d+)"', r.text)
        if not m:
            assert "All done" in r.text
            break
        texts.append(r.text)
        bad = c.post("/annotate", data={"csrf": tok, "item_id": m.group(1), "accept_a": "1", "preference": "0"})
        assert bad.status_code == 400 and "choose a value for accept b" in bad.text
        c.post("/annotate", data={"csrf": tok, "item_id": m.group(1), "accept_a": "1", "accept_b": "0",
                                  "preference": "-1"})
    page = next(t for t in texts if "__pwned" in t)
    assert "<script>window.__pwned" not in page and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    assert 'dir="auto"' in page
    rtl = next(t for t in texts if 'lang="ar"' in t)
    assert "أعطني" in rtl
    # Another annotator's answers are nowhere in bob's pages.
    bob, _ = logged_in(app, "bob")
    assert 'checked' not in bob.get("/annotate").text


def test_serve_binds_loopback_by_default_and_checks_the_host_header(store):
    args = build_parser().parse_args(["annotate", "serve", "db.sqlite"])
    assert args.host == "127.0.0.1"
    app = create_app(store, allowed_hosts=["127.0.0.1", "localhost"])
    assert TestClient(app, base_url="http://127.0.0.1:8765").get("/login").status_code == 200
    assert TestClient(app, base_url="http://rebound.example").get("/login").status_code == 400


def test_arena_api_records_a_blind_vote(store):
    engines = {"m1": Engine("m1", ScriptedBackend(["one", " two"], delay=0)),
               "m2": Engine("m2", ScriptedBackend(["uno", " dos"], delay=0))}
    app = create_app(store, engines)
    c, tok = logged_in(app, "carol")
    h = {"X-CSRF-Token": tok}
    body = {"messages": [{"role": "user", "content": "count"}], "settings": {"max_tokens": 8}}
    assert c.post("/api/arena", json=body).status_code == 403  # token needed for JSON too
    rid = c.post("/api/arena", json=body, headers=h).json()["round"]
    assert c.post(f"/api/arena/{rid}/vote", json={"preference": 0, "accept_a": 1, "accept_b": 1},
                  headers=h).status_code == 400  # no answers yet
    shown = {}
    for side in ("a", "b"):
        r = c.post(f"/api/arena/{rid}/{side}", json={"settings": {}}, headers=h)
        events = [json.loads(line) for line in r.text.splitlines()]
        assert events[-1] == {"done": True}
        shown[side] = "".join(e.get("text", "") for e in events)
        assert "m1" not in r.text and "m2" not in r.text
    assert sorted(shown.values()) == ["one two", "uno dos"]
    other, otok = logged_in(app, "bob")  # someone else's round
    assert other.post(f"/api/arena/{rid}/vote", json={"preference": 2, "accept_a": 1, "accept_b": 1},
                      headers={"X-CSRF-Token": otok}).status_code == 400
    again = c.post(f"/api/arena/{rid}/a", json={"settings": {}}, headers=h)  # answers cannot be replaced:
    events = [json.loads(line) for line in again.text.splitlines()]  # asking again gives the stored one
    assert "".join(e.get("text", "") for e in events) == shown["a"] and events[-1] == {"done": True}
    r = c.post(f"/api/arena/{rid}/vote", json={"preference": 2, "accept_a": 0, "accept_b": 1}, headers=h)
    assert r.json() == {"stored": True}
    row = store.export_rows(source="arena")[0]
    b_model = "m1" if shown["b"] == "one two" else "m2"
    assert (row["model"] if row["preference"] == "win" else row["baseline"]) == b_model


def test_chat_api_rejects_bad_requests_naming_the_field(store):
    engines = {"m1": Engine("m1", ScriptedBackend(["ok"], delay=0))}
    c, tok = logged_in(create_app(store, engines))
    h = {"X-CSRF-Token": tok}
    msg = [{"role": "user", "content": "hi"}]
    r = c.post("/api/chat", json={"engine": "nope", "messages": msg}, headers=h)
    assert r.status_code == 400 and "unknown model 'nope'" in r.json()["error"]
    r = c.post("/api/chat", json={"engine": "m1", "messages": msg, "settings": {"max_tokens": 10**6}}, headers=h)
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]
    r = c.post("/api/chat", json={"engine": "m1", "messages": [{"role": "root", "content": "x"}]}, headers=h)
    assert r.status_code == 400 and "messages.0" in r.json()["error"]
    r = c.post("/api/chat", json={"engine": "m1", "messages": msg, "system": "Be brief."}, headers=h)
    assert [json.loads(line) for line in r.text.splitlines()] == [{"text": "ok"}, {"done": True}]


@pytest.mark.parametrize("spec", ["no-equals", "=x", "name="])
def test_engine_spec_errors(spec):
    from polyinstruct.annotate.engines import load_engine
    from polyinstruct.errors import ConfigError

    with pytest.raises(ConfigError, match="NAME=RUN_DIR"):
        load_engine(spec)


@pytest.mark.slow
def test_chat_with_a_local_run_dir_streams_from_the_model(store, tiny_model_dir):
    from polyinstruct.annotate.engines import load_engine

    engine = load_engine(f"tiny={tiny_model_dir}", device="cpu", template="tulu")
    c, tok = logged_in(create_app(store, {"tiny": engine}))
    r = c.post("/api/chat", json={"engine": "tiny", "messages": [{"role": "user", "content": "Привет"}],
                                  "settings": {"max_tokens": 6, "temperature": 0}}, headers={"X-CSRF-Token": tok})
    events = [json.loads(line) for line in r.text.splitlines()]
    assert events[-1] == {"done": True}, events
    pieces = [e["text"] for e in events if "text" in e]
    params = params_from({"max_tokens": 6, "temperature": 0})
    expected = engine.backend.generate([[{"role": "user", "content": "Привет"}]], params)[0].text
    assert "".join(pieces) == expected  # greedy: the stream adds up to the model's own answer
