"""The annotation store, assignment, export and agreement (no browser)."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from polyinstruct.annotate.agreement import agreement_table, to_markdown
from polyinstruct.annotate.store import Store, StoreError
from polyinstruct.cli import main as cli_main
from polyinstruct.errors import DataError
from polyinstruct.judge.agreement import load_human_scores
from polyinstruct.stats import fleiss_kappa
from tests.annotate.conftest import FAST_HASH, PROMPTS, write_predictions


def _judge_all(store: Store, annotator: str, pick) -> list[int]:
    done = []
    while (item := store.next_item(annotator)) is not None:
        assert store.submit(annotator, item.id, **pick(item))
        done.append(item.id)
    return done


def test_passwords_are_argon2_hashes_and_login_checks_them(store):
    row = sqlite3.connect(store.path).execute("SELECT password_hash FROM annotators WHERE name='bob'").fetchone()
    assert row[0].startswith("$argon2id$") and "bob-pass-22" not in row[0]
    assert store.check_login("bob", "bob-pass-22") == {"name": "bob", "is_admin": False}
    assert store.check_login("bob", "bob-pass-2") is None
    assert store.check_login("nobody", "bob-pass-22") is None
    with pytest.raises(StoreError, match="already exists"):
        store.add_annotator("bob", "another-pass")
    with pytest.raises(StoreError, match="at least 8"):
        store.add_annotator("dave", "short")


def test_import_reports_every_row_and_rejects_bad_files(tmp_path):
    paths = write_predictions(tmp_path, systems=("s1", "s2", "s3"))
    with open(paths[2], "a", encoding="utf-8") as f:  # an id only one system has
        f.write(json.dumps({"id": "extra", "prompt": "hi", "response": "hello", "model": "s3"}) + "\n")
    store = Store(tmp_path / "db.sqlite", hasher_params=FAST_HASH)
    res = store.import_predictions(paths, k=2)
    n = len(PROMPTS)
    assert res["rows_read"] == 3 * n + 1 and res["rows_used"] == 3 * n and res["rows_rejected"] == 1
    assert res["missing_ids"] == {"s3": ["extra"]}
    assert res["items_added"] == 3 * n  # every pair of the three systems
    assert store.import_predictions(paths, k=2)["items_already_present"] == 3 * n  # idempotent

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q0", "messages": [{"role": "user", "content": "x"}], "model": "z"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: response"):
        store.import_predictions([paths[0], str(bad)])
    dup = tmp_path / "dup.jsonl"
    dup.write_text(open(paths[0], encoding="utf-8").read().splitlines()[0] + "\n" +
                   open(paths[0], encoding="utf-8").read().splitlines()[0] + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dup\.jsonl:2: id: duplicate id 'q0'"):
        store.import_predictions([paths[1], str(dup)])
    with pytest.raises(DataError, match="appears twice"):
        store.import_predictions([paths[0], paths[0]])
    # The CLI says where, without a traceback.
    assert cli_main(["annotate", "import", str(tmp_path / "db.sqlite"), paths[0], str(bad)]) == 1


def test_display_order_is_seeded_recorded_and_mixed(tmp_path):
    paths = write_predictions(tmp_path)
    orders = []
    for run in range(2):
        s = Store(tmp_path / f"db{run}.sqlite", hasher_params=FAST_HASH)
        s.import_predictions(paths, seed=7)
        orders.append(s.query("SELECT key, swapped, order_seed FROM items ORDER BY key"))
    assert [tuple(r) for r in orders[0]] == [tuple(r) for r in orders[1]]
    assert {r["swapped"] for r in orders[0]} == {0, 1}  # both orders occur
    assert orders[0][0]["order_seed"] == f"7:{orders[0][0]['key']}"


def test_k_annotators_per_item_none_twice_and_export(store, tmp_path):
    n = len(PROMPTS)
    a = _judge_all(store, "alice", lambda it: {"accept_a": 1, "accept_b": 0, "preference": -2})
    b = _judge_all(store, "bob", lambda it: {"accept_a": 1, "accept_b": 1, "preference": 0})
    c = _judge_all(store, "carol", lambda it: {"accept_a": 0, "accept_b": 0, "preference": 1})
    assert len(a) == len(set(a)) == n and len(b) == len(set(b)) == n
    assert c == []  # k=2 reached everywhere
    assert store.progress()["items_complete"] == n
    # A second submission of the same item by the same annotator is not counted.
    assert store.submit("alice", a[0], accept_a=0, accept_b=0, preference=2) is False
    with pytest.raises(StoreError, match="not assigned"):
        store.submit("carol", a[0], accept_a=0, accept_b=0, preference=2)
    with pytest.raises(StoreError, match="preference"):
        store.submit("alice", a[0], accept_a=0, accept_b=0, preference=3)

    rows = store.export_rows("pairwise")
    assert len(rows) == 2 * n
    for r in rows:
        shown_a = r["shown_first"]
        if r["annotator"] == "alice":  # "A clearly better", A acceptable, B not
            assert r["strength"] == 2
            assert r["preference"] == ("win" if shown_a == r["model"] else "loss")
            assert r["accept_model"] == (1 if shown_a == r["model"] else 0)
        else:
            assert r["preference"] == "tie" and r["strength"] == 0
    out = tmp_path / "human.jsonl"
    assert cli_main(["annotate", "export", store.path, "--out", str(out)]) == 0
    assert len(load_human_scores(str(out))) == 2 * n  # the shape judge-agreement reads
    acc = store.export_rows("acceptability")
    assert len(acc) == 4 * n and {r["score"] for r in acc} == {0, 1}


def test_concurrent_annotators_lose_and_double_nothing(tmp_path):
    """8 threads, each with its own connection, judge 3 items each, resubmitting every form twice."""
    paths = write_predictions(tmp_path, systems=("s1", "s2", "s3", "s4"))  # 6 pairs x 6 prompts = 36 items
    store = Store(tmp_path / "db.sqlite", hasher_params=FAST_HASH)
    store.import_predictions(paths, k=2)
    names = [f"ann{i}" for i in range(8)]
    for n in names:
        store.add_annotator(n, "password-" + n)
    errors, stored = [], []

    def work(name):
        try:
            for _ in range(3):
                item = store.next_item(name)
                for _ in range(2):
                    stored.append(store.submit(name, item.id, accept_a=1, accept_b=1, preference=0))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert stored.count(True) == 24 and stored.count(False) == 24
    con = sqlite3.connect(store.path)
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT item_id || '/' || annotator) FROM judgments").fetchone() == (24, 24)
    assert con.execute("SELECT MAX(c) FROM (SELECT COUNT(*) c FROM judgments GROUP BY item_id)").fetchone()[0] <= 2


def test_fleiss_kappa_matches_the_textbook_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    ratings = [[j for j, c in enumerate(row) for _ in range(c)] for row in table]
    assert fleiss_kappa(ratings) == pytest.approx(0.2099, abs=1e-4)
    assert fleiss_kappa([["x", "x"], ["y", "y"]]) == 1.0
    assert fleiss_kappa([["x"]]) is None


def test_agreement_table_by_hand():
    # Two annotators, four items of systems m1 vs m2 in one language.
    prefs = [("win", "win"), ("win", "tie"), ("loss", "win"), ("tie", "tie")]
    accs = [((1, 0), (1, 0)), ((1, 1), (1, 0)), ((0, 1), (1, 1)), ((1, 1), (1, 1))]
    pairwise, acceptability = [], []
    for i, ((p1, p2), (a1, a2)) in enumerate(zip(prefs, accs)):
        for ann, p, (am, ab) in (("u1", p1, a1), ("u2", p2, a2)):
            pairwise.append({"id": f"q{i}", "model": "m1", "baseline": "m2", "language": "de", "annotator": ann,
                             "preference": p})
            acceptability += [{"id": f"q{i}", "item": f"q{i}", "model": "m1", "language": "de", "annotator": ann,
                               "score": am},
                              {"id": f"q{i}", "item": f"q{i}", "model": "m2", "language": "de", "annotator": ann,
                               "score": ab}]
    t = agreement_table(pairwise, acceptability)
    # pairwise: match, one tie (0.5), opposite (0), match -> 2.5 / 4
    assert t["pairwise"]["agreement_ties_half"] == pytest.approx(0.625)
    # acceptability labels u1: 1,0,1,1,0,1,1,1  u2: 1,0,1,0,1,1,1,1 -> 6 of 8 agree
    assert t["acceptability"]["agreement"] == pytest.approx(0.75)
    assert t["acceptability"]["items_with_2plus"] == 8
    md = to_markdown(t)
    assert "| acceptability | 0.750 |" in md and "ties count half" in md


def test_an_unanswered_item_goes_back_to_the_pool_after_its_lease(tmp_path):
    store = Store(tmp_path / "db.sqlite", hasher_params=FAST_HASH)
    store.import_predictions(write_predictions(tmp_path), k=1)
    for n in ("alice", "bob"):
        store.add_annotator(n, "password-" + n)
    held = store.next_item("alice")
    assert store.next_item("alice").id == held.id  # a reload shows the same item
    others = _judge_all(store, "bob", lambda it: {"accept_a": 1, "accept_b": 1, "preference": 0})
    assert held.id not in others and len(others) == len(PROMPTS) - 1  # alice's open item holds its only slot
    con = sqlite3.connect(store.path)
    con.execute("UPDATE assignments SET assigned = assigned - 7200 WHERE annotator='alice'")  # idle for 2 hours
    con.commit()
    assert store.next_item("bob").id == held.id  # the slot is free again
    assert store.submit("bob", held.id, accept_a=0, accept_b=1, preference=1)
    with pytest.raises(StoreError, match="already has its 1 judgments"):  # never more than k
        store.submit("alice", held.id, accept_a=1, accept_b=1, preference=0)
    assert store.next_item("alice") is None and store.progress()["items_complete"] == len(PROMPTS)


@pytest.mark.slow  # real argon2 settings through the CLI
def test_cli_accounts_progress_and_agreement_table(tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "h.sqlite")
    paths = write_predictions(tmp_path)
    assert cli_main(["annotate", "import", db, f"first={paths[0]}", f"second={paths[1]}", "--k", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["systems"] == ["first", "second"]
    monkeypatch.setenv("ANN_PW", "a-long-password")
    assert cli_main(["annotate", "add-user", db, "u1", "--password-env", "ANN_PW"]) == 0
    assert cli_main(["annotate", "add-user", db, "u1", "--password-env", "ANN_PW"]) == 1  # exists
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["annotate", "add-user", db, "u2", "--password-env", "UNSET_VAR_X"]) == 1
    assert cli_main(["annotate", "serve", str(tmp_path / "missing.sqlite")]) == 1
    assert "no annotation database" in capsys.readouterr().err
    store = Store(db)
    store.add_annotator("u2", "another-password")
    for u, pref in (("u1", -2), ("u2", -1)):
        _judge_all(store, u, lambda it, p=pref: {"accept_a": 1, "accept_b": 0, "preference": p})
    assert cli_main(["annotate", "progress", db]) == 0
    assert json.loads(capsys.readouterr().out)["items_complete"] == len(PROMPTS)
    out = tmp_path / "agreement.md"
    assert cli_main(["annotate", "agreement", db, "--out", str(out)]) == 0
    md = out.read_text(encoding="utf-8")
    # Both always prefer A (clearly vs slightly) and accept A only: full agreement on win/tie/loss.
    assert "| acceptability | 1.000 |" in md and "| pairwise preference (ties count half) | 1.000 |" in md
