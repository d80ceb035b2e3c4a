"""The annotation app in a real browser (chromium via Playwright): log in, annotate, export,
check the database; model text holding markup renders as text; two annotators at once;
the chat streams tokens into the page; the arena's blind vote lands in the store."""

from __future__ import annotations

import json
import sqlite3

import pytest

from polyinstruct.annotate.app import create_app, running
from polyinstruct.annotate.engines import load_engine
from polyinstruct.cli import main as cli_main
from tests.annotate.conftest import PASSWORDS, PROMPTS

pytestmark = pytest.mark.slow


def login(browser, url, name, shots=None):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = ctx.new_page()
    page.set_default_timeout(15000)
    page.goto(url + "/annotate")
    assert page.url.endswith("/login")  # annotation needs a login
    if shots is not None:
        page.screenshot(path=str(shots / "login.png"))
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url.endswith("/annotate"), page.url
    return ctx, page


def current_item(page) -> int | None:
    el = page.query_selector("input[name=item_id]")
    return int(el.get_attribute("value")) if el else None


def test_annotate_export_and_database(store, browser, shots, tmp_path):
    app = create_app(store)
    with running(app) as url:
        # Wrong password: stays on the login page with a message.
        ctx0 = browser.new_context()
        p0 = ctx0.new_page()
        p0.goto(url + "/login")
        p0.fill("input[name=username]", "alice")
        p0.fill("input[name=password]", "wrong-password")
        p0.click("button[type=submit]")
        assert "Wrong name or password" in p0.inner_text("main")
        ctx0.close()

        ctx_a, alice = login(browser, url, "alice", shots)
        ctx_b, bob = login(browser, url, "bob")
        seen = {"alice": [], "bob": []}
        choices = {}
        for round_ in range(len(PROMPTS)):
            # alice: keyboard shortcuts (1-5, a/b toggles, Enter submits)
            item = current_item(alice)
            assert item is not None
            seen["alice"].append(item)
            html = alice.content()
            assert "sys-a" not in html and "sys-b" not in html  # blind: no model names
            outputs = alice.inner_text("#output-a .text") + alice.inner_text("#output-b .text")
            if "<script>" in outputs:
                alice.screenshot(path=str(shots / "annotate_markup_as_text.png"), full_page=True)
                assert alice.query_selector(".output script, .output img") is None
                assert alice.evaluate("window.__pwned") is None
            lang = alice.get_attribute("#output-a .text", "lang")
            if lang in ("ar", "he"):
                alice.screenshot(path=str(shots / f"annotate_rtl_{lang}.png"), full_page=True)
                assert alice.evaluate("getComputedStyle(document.querySelector('#output-a .text')).direction") == "rtl"
            if lang in ("zh", "bn"):
                alice.screenshot(path=str(shots / f"annotate_{lang}.png"), full_page=True)
            key = str(round_ % 5 + 1)
            alice.keyboard.press("a")
            alice.keyboard.press("b")
            alice.keyboard.press("b")  # toggles B back to "no"
            alice.keyboard.press(key)
            choices[item] = {"preference": round_ % 5 - 2, "accept_a": 1, "accept_b": 0}
            with alice.expect_navigation():
                alice.keyboard.press("Enter")
            assert "Saved." in alice.inner_text("main")

            # bob, at the same time in another session: mouse clicks; he never sees alice's answer
            item_b = current_item(bob)
            assert item_b is not None
            seen["bob"].append(item_b)
            assert not bob.is_checked("input[name=preference][value='-2']")
            bob.check("input[name=accept_a][value='0']")
            bob.check("input[name=accept_b][value='1']")
            bob.check("input[name=preference][value='2']")
            bob.fill("textarea[name=comment]", f"bob {round_} — مثال")
            with bob.expect_navigation():
                bob.click("#submit")
            assert "Saved." in bob.inner_text("main")

        # k=2 and two annotators: each saw every item exactly once; a third one has nothing left.
        n_items = len(PROMPTS)
        assert sorted(seen["alice"]) == sorted(set(seen["alice"])) and len(seen["alice"]) == n_items
        assert sorted(seen["bob"]) == sorted(set(seen["bob"])) and len(seen["bob"]) == n_items
        assert "All done" in alice.inner_text("main")
        alice.screenshot(path=str(shots / "annotate_done.png"))
        ctx_c, carol = login(browser, url, "carol")
        assert "All done" in carol.inner_text("main")

        alice.goto(url + "/admin")
        assert "12 of 12 judgments" in alice.inner_text("main")
        alice.screenshot(path=str(shots / "admin_progress.png"))
        carol.goto(url + "/admin")
        assert carol.inner_text("main").startswith("Forbidden")  # progress is for admins
        for c in (ctx_a, ctx_b, ctx_c):
            c.close()

    # Export through the CLI; judge-agreement reads it.
    out = tmp_path / "human.jsonl"
    assert cli_main(["annotate", "export", store.path, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 * n_items
    from polyinstruct.judge.agreement import agreement_report

    rep = agreement_report(str(out))
    assert rep["n_human"] == 2 * n_items and rep["annotators"]["pairs"][0]["n"] == n_items

    # The database holds exactly what was clicked, in display order.
    con = sqlite3.connect(store.path)
    got = {r[0]: {"preference": r[1], "accept_a": r[2], "accept_b": r[3]} for r in con.execute(
        "SELECT item_id, preference, accept_a, accept_b FROM judgments WHERE annotator='alice'")}
    assert got == choices
    bob_rows = con.execute("SELECT preference, accept_a, accept_b, comment FROM judgments WHERE annotator='bob'").fetchall()
    assert len(bob_rows) == n_items and all(r[:3] == (2, 0, 1) for r in bob_rows)
    assert bob_rows[0][3] == "bob 0 — مثال"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _snapshots_until_done(page, selector):
    """Record every text the element shows while it streams; returns the list."""
    page.evaluate("""(sel) => {
        window.__snaps = [];
        const log = document.querySelector(sel);
        new MutationObserver(() => {
            const last = log.lastElementChild;
            if (last) window.__snaps.push(last.textContent);
        }).observe(log, {subtree: true, childList: true, characterData: true});
    }""", selector)


def test_chat_streams_tokens_into_the_page(store, browser, shots, endpoints):
    engines = {name: load_engine(f"{name}={url}") for name, url in endpoints.items()}
    with running(create_app(store, engines)) as url:
        ctx, page = login(browser, url, "alice")
        page.goto(url + "/chat")
        page.select_option("#engine", "alpha")
        page.fill("#system", "Be brief.")
        _snapshots_until_done(page, "#log")
        page.fill("#input", "Say hello")
        page.keyboard.press("Enter")
        page.wait_for_selector(".msg.assistant:nth-of-type(2)")
        page.wait_for_timeout(250)
        page.screenshot(path=str(shots / "chat_streaming.png"))
        page.wait_for_selector(".msg.assistant[data-done='1']")
        final = page.inner_text(".msg.assistant")
        assert final == "Hello from alpha: <b>not</b> bold."  # markup shows as text
        assert page.query_selector(".msg.assistant b") is None
        snaps = [s for s in page.evaluate("window.__snaps") if s]
        partial = [s for s in snaps if s != final and final.startswith(s)]
        assert len(set(partial)) >= 3, snaps  # the reply grew token by token
        # A second turn in another script keeps going (history is sent along).
        page.fill("#input", "Спасибо! مرحبا")
        page.keyboard.press("Enter")
        page.wait_for_selector(".msg.assistant:nth-child(4)[data-done='1']")
        page.screenshot(path=str(shots / "chat_done.png"))
        ctx.close()


def test_arena_blind_vote_goes_into_the_store(store, browser, shots, endpoints):
    engines = {name: load_engine(f"{name}={url}") for name, url in endpoints.items()}
    with running(create_app(store, engines)) as url:
        ctx, page = login(browser, url, "bob")
        page.goto(url + "/arena")
        page.fill("#input", "Say hello in any language")
        page.click("#send")
        page.wait_for_selector("#vote:not([hidden])")
        page.screenshot(path=str(shots / "arena_before_vote.png"), full_page=True)
        a, b = page.inner_text("#arena-a"), page.inner_text("#arena-b")
        assert {a, b} == {"Hello from alpha: <b>not</b> bold.", "Привет от beta."}
        rest = page.inner_text("body").replace(a, "").replace(b, "")
        assert "alpha" not in rest and "beta" not in rest  # blind: no model names outside the answers
        page.keyboard.press("1")  # A is clearly better
        page.wait_for_selector("#arena-status:has-text('Vote recorded')")
        page.screenshot(path=str(shots / "arena_voted.png"), full_page=True)
        ctx.close()
    rows = store.export_rows("pairwise", source="arena")
    assert len(rows) == 1 and rows[0]["annotator"] == "bob"
    winner = "alpha" if a.startswith("Hello") else "beta"
    r = rows[0]
    assert (r["model"] if r["preference"] == "win" else r["baseline"]) == winner and r["strength"] == 2
    assert store.export_rows("pairwise", source="import") == []  # arena votes stay apart from annotations


def test_chat_after_a_template_error_still_answers(store, browser, shots):
    from polyinstruct.annotate.engines import Engine
    from tests.annotate.conftest import NoSystemBackend

    engine = Engine("strict", NoSystemBackend(["Still", " answering", "."], delay=0.05))
    with running(create_app(store, {"strict": engine})) as url:
        ctx, page = login(browser, url, "alice")
        page.goto(url + "/chat")
        page.fill("#system", "Be brief.")  # this template refuses a system turn (as Gemma-2's does)
        page.fill("#input", "Say hello")
        page.keyboard.press("Enter")
        page.wait_for_selector(".msg.assistant[data-done='1']")
        assert "System role not supported" in page.inner_text(".msg.assistant.error")
        page.screenshot(path=str(shots / "chat_template_error.png"))
        page.fill("#system", "")
        page.fill("#input", "Say hello")
        page.keyboard.press("Enter")  # before the fix the model stayed locked and this never answered
        page.wait_for_selector(".msg.assistant:nth-child(4)[data-done='1']")
        assert page.inner_text(".msg.assistant:nth-child(4)") == "Still answering."
        ctx.close()


def test_logout_then_the_old_cookie_is_refused(store, browser):
    with running(create_app(store)) as url:
        ctx, page = login(browser, url, "alice")
        cookies = ctx.cookies()
        assert any(c["name"] == "polyinstruct_session" for c in cookies)
        with page.expect_navigation():
            page.click("form.logout button[type=submit]")
        assert page.url.endswith("/login")
        # Someone who copied the cookie before the logout: it no longer opens anything.
        thief = browser.new_context()
        thief.add_cookies(cookies)
        p = thief.new_page()
        p.goto(url + "/annotate")
        assert p.url.endswith("/login")
        p.goto(url + "/admin")
        assert p.url.endswith("/login")
        thief.close()
        ctx.close()


def test_arena_vote_after_a_disconnect_shows_the_same_answer(store, browser, shots):
    from polyinstruct.annotate.engines import Engine
    from tests.annotate.conftest import RandomBackend

    # Each call of these models says something new: a re-rolled side would show different words.
    engines = {n: Engine(n, RandomBackend([], delay=0.15)) for n in ("m1", "m2")}
    with running(create_app(store, engines)) as url:
        ctx, page = login(browser, url, "bob")
        page.goto(url + "/arena")
        page.fill("#input", "Say something")
        page.click("#send")
        page.wait_for_selector("#arena-a:not(:empty)")
        partial = page.inner_text("#arena-a")
        page.reload()  # the connection goes mid-answer; the page resumes the round
        page.wait_for_selector("#vote:not([hidden])")
        a, b = page.inner_text("#arena-a"), page.inner_text("#arena-b")
        assert a.startswith(partial) and len(a.split()) == 8 and len(b.split()) == 8
        page.screenshot(path=str(shots / "arena_resumed.png"), full_page=True)
        page.keyboard.press("5")  # B is clearly better
        page.wait_for_selector("#arena-status:has-text('Vote recorded')")
        ctx.close()
    row = store.query("SELECT id, output_x, output_y, swapped FROM items WHERE source='arena'")
    assert len(row) == 1
    shown_a, shown_b = (row[0]["output_y"], row[0]["output_x"]) if row[0]["swapped"] else (
        row[0]["output_x"], row[0]["output_y"])
    assert (shown_a.strip(), shown_b.strip()) == (a.strip(), b.strip())  # the vote is about what was shown
    votes = store.export_rows("pairwise", source="arena")
    assert len(votes) == 1 and votes[0]["strength"] == 2
