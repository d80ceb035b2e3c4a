"""The annotation store: one SQLite file in WAL mode.

Tables: ``annotators`` (argon2 password hashes), ``items`` (a prompt and two systems'
outputs, in import order ``x``/``y`` plus the seeded, recorded display order),
``assignments`` (which annotator was shown which item, and when), ``judgments``
(acceptability of each shown output, the 5-way preference, an optional comment),
``sessions`` (server-side logins: revoked on logout and whenever an account's password
or role changes) and ``arena_rounds`` (the fixed decoding settings and seed of a round).

Every write is one ``BEGIN IMMEDIATE`` transaction and ``judgments`` has
``UNIQUE(item_id, annotator)``, so concurrent annotators never lose a write and a
resubmitted form never counts twice. Assignment gives each item at most ``k``
annotators (open assignments hold a slot for ``lease_s`` seconds) and never shows an
annotator an item twice. Display order: output A is system ``y`` when ``swapped``.

Preferences are stored as shown: -2 A clearly better, -1 A slightly better, 0 tie,
1 B slightly better, 2 B clearly better. ``export_rows`` turns them into the rows
``polyinstruct judge-agreement`` reads (docs/judging.md, docs/annotation.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Iterator

from polyinstruct.errors import DataError, MissingDependencyError, PolyinstructError
from polyinstruct.fileio import iter_jsonl

PREFERENCES = {
    -2: "A is clearly better",
    -1: "A is slightly better",
    0: "Tie",
    1: "B is slightly better",
    2: "B is clearly better",
}
DEFAULT_LEASE_S = 1800.0
MAX_COMMENT_CHARS = 4000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS annotators (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    prompt_id TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('import', 'arena')),
    language TEXT,
    messages TEXT NOT NULL,
    model_x TEXT NOT NULL,
    model_y TEXT NOT NULL,
    output_x TEXT,
    output_y TEXT,
    order_seed TEXT NOT NULL,
    swapped INTEGER NOT NULL CHECK (swapped IN (0, 1)),
    k INTEGER NOT NULL CHECK (k >= 1),
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_source ON items (source);
CREATE TABLE IF NOT EXISTS assignments (
    item_id INTEGER NOT NULL REFERENCES items (id),
    annotator TEXT NOT NULL REFERENCES annotators (name),
    assigned REAL NOT NULL,
    PRIMARY KEY (item_id, annotator)
);
CREATE INDEX IF NOT EXISTS assignments_annotator ON assignments (annotator);
CREATE TABLE IF NOT EXISTS judgments (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items (id),
    annotator TEXT NOT NULL REFERENCES annotators (name),
    accept_a INTEGER NOT NULL CHECK (accept_a IN (0, 1)),
    accept_b INTEGER NOT NULL CHECK (accept_b IN (0, 1)),
    preference INTEGER NOT NULL CHECK (preference BETWEEN -2 AND 2),
    comment TEXT,
    seconds REAL,
    created REAL NOT NULL,
    UNIQUE (item_id, annotator)
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    annotator TEXT NOT NULL REFERENCES annotators (name) ON DELETE CASCADE,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_annotator ON sessions (annotator);
CREATE TABLE IF NOT EXISTS arena_rounds (
    item_id INTEGER PRIMARY KEY REFERENCES items (id),
    annotator TEXT NOT NULL,
    settings TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS arena_rounds_annotator ON arena_rounds (annotator, created);
"""
# SQLite integers are signed 64-bit: a larger id cannot name a row (and would overflow the driver).
MAX_ROW_ID = 2**63 - 1


class StoreError(PolyinstructError):
    """An annotation request that cannot be honoured (unknown item, not assigned, bad value)."""


def _password_hasher(params: dict[str, int] | None = None):
    try:
        from argon2 import PasswordHasher
    except ImportError as e:
        raise MissingDependencyError("annotation accounts need argon2-cffi: pip install 'polyinstruct[web]'") from e
    return PasswordHasher(**(params or {}))  # argon2id with the library's (RFC 9106) defaults


@dataclass
class Item:
    """One item as an annotator sees it: A/B already in display order, no model names."""

    id: int
    key: str
    language: str | None
    messages: list[dict[str, str]]
    output_a: str
    output_b: str
    source: str


@dataclass
class ArenaSide:
    """One side of an arena round, as the server needs it (the model name never reaches the page)."""

    model: str
    messages: list[dict[str, str]]
    settings: dict[str, Any]
    output: str | None


class Store:
    """Thread-safe access to one annotation database (one connection per thread)."""

    def __init__(self, path: str | os.PathLike, *, journal_mode: str = "wal",
                 hasher_params: dict[str, int] | None = None):
        """``hasher_params``: argon2 ``PasswordHasher`` settings for new passwords (tests use cheap ones)."""
        self.path = str(path)
        self.hasher_params = hasher_params
        self.journal_mode = journal_mode
        self._local = threading.local()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = self._con()
        mode = con.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0]
        if mode.lower() != journal_mode.lower():
            raise PolyinstructError(f"{self.path}: could not switch SQLite to {journal_mode} mode (got {mode})")
        con.executescript(SCHEMA)
        self._dummy_hash: str | None = None

    # --- plumbing ------------------------------------------------------------------------------
    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as e:
                raise PolyinstructError(f"{self.path}: cannot open the annotation database: {e}") from None
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA busy_timeout=30000")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA synchronous=FULL")  # a committed judgment survives a power cut
            self._local.con = con
        return con

    def _write(self):
        return _Transaction(self._con())

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self._con().execute(sql, tuple(args)).fetchall()

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def secret_key(self) -> str:
        """The session-signing key, made once per database and kept in it."""
        with self._write() as con:
            row = con.execute("SELECT value FROM meta WHERE key='session_secret'").fetchone()
            if row:
                return row[0]
            value = secrets.token_hex(32)
            con.execute("INSERT INTO meta (key, value) VALUES ('session_secret', ?)", (value,))
            return value

    # --- accounts ------------------------------------------------------------------------------
    def add_annotator(self, name: str, password: str, *, admin: bool = False, replace: bool = False) -> None:
        name = name.strip()
        if not name or len(name) > 64 or any(c.isspace() for c in name):
            raise StoreError(f"annotator name {name!r} must be 1-64 characters without spaces")
        if len(password) < 8:
            raise StoreError("password must have at least 8 characters")
        digest = _password_hasher(self.hasher_params).hash(password)
        with self._write() as con:
            exists = con.execute("SELECT 1 FROM annotators WHERE name=?", (name,)).fetchone()
            if exists and not replace:
                raise StoreError(f"annotator {name!r} already exists (use --replace to set a new password)")
            con.execute("INSERT INTO annotators (name, password_hash, is_admin, created) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET password_hash=excluded.password_hash, "
                        "is_admin=excluded.is_admin", (name, digest, int(admin), time.time()))
            # a new password or role ends every open session of the account (the old cookie stops working)
            con.execute("DELETE FROM sessions WHERE annotator=?", (name,))

    def check_login(self, name: str, password: str) -> dict[str, Any] | None:
        """The annotator's row when the password matches, else None (same work either way)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        hasher = _password_hasher(self.hasher_params)
        row = self._con().execute("SELECT name, password_hash, is_admin FROM annotators WHERE name=?",
                                  (name,)).fetchone()
        if self._dummy_hash is None:
            self._dummy_hash = hasher.hash(secrets.token_hex(16))
        try:
            hasher.verify(row["password_hash"] if row else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return {"name": row["name"], "is_admin": bool(row["is_admin"])} if row else None

    # --- sessions ------------------------------------------------------------------------------
    def new_session(self, annotator: str, *, max_age_s: float) -> str:
        """A fresh session token for ``annotator`` (only its SHA-256 is stored)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._write() as con:
            con.execute("DELETE FROM sessions WHERE expires<?", (now,))
            con.execute("INSERT INTO sessions (id, annotator, created, expires) VALUES (?, ?, ?, ?)",
                        (_token_id(token), annotator, now, now + max_age_s))
        return token

    def session_user(self, token: str | None) -> dict[str, Any] | None:
        """The annotator (name, is_admin as stored now) behind a live session token, else None."""
        if not token or not isinstance(token, str) or len(token) > 128:
            return None
        row = self._con().execute(
            "SELECT a.name, a.is_admin FROM sessions s JOIN annotators a ON a.name=s.annotator "
            "WHERE s.id=? AND s.expires>=?", (_token_id(token), time.time())).fetchone()
        return {"name": row["name"], "is_admin": bool(row["is_admin"])} if row else None

    def end_session(self, token: str | None) -> None:
        if token and isinstance(token, str):
            with self._write() as con:
                con.execute("DELETE FROM sessions WHERE id=?", (_token_id(token),))

    def revoke_sessions(self, annotator: str) -> int:
        """End every session of ``annotator``; returns how many there were."""
        with self._write() as con:
            return con.execute("DELETE FROM sessions WHERE annotator=?", (annotator,)).rowcount

    def annotators(self) -> list[str]:
        return [r[0] for r in self.query("SELECT name FROM annotators ORDER BY name")]

    # --- items ---------------------------------------------------------------------------------
    def import_predictions(self, paths: list[str], *, k: int = 3, seed: int = 0,
                           names: list[str | None] | None = None) -> dict[str, Any]:
        """Add one item per prompt id and pair of systems; returns counts (rows in = used + rejected).

        Each file holds one system's predictions (``id``, ``response`` and ``messages`` or
        ``prompt``; ``model`` names the system unless ``names`` does). Ids missing from
        some systems are reported, not imported. Re-importing the same item is a no-op.
        """
        if len(paths) < 2:
            raise StoreError("import needs prediction files of at least two systems")
        if k < 1:
            raise StoreError(f"k must be at least 1, got {k}")
        names = list(names or [None] * len(paths))
        systems: list[tuple[str, dict[str, dict[str, Any]]]] = []
        n_rows = 0
        for path, name in zip(paths, names):
            model, rows = _read_predictions(path, name)
            if any(model == s for s, _ in systems):
                raise DataError(f"system {model!r} appears twice; name the files apart with NAME=PATH",
                                path=path, field="model")
            systems.append((model, rows))
            n_rows += len(rows)
        common = set(systems[0][1]).intersection(*(set(r) for _, r in systems[1:]))
        missing = {m: sorted(set(rows) - common) for m, rows in systems if set(rows) - common}
        pairs = list(combinations(range(len(systems)), 2))
        added = existing = 0
        now = time.time()
        with self._write() as con:
            for pid in sorted(common):
                for i, j in pairs:
                    (mx, rx), (my, ry) = systems[i], systems[j]
                    key = pid if len(systems) == 2 else f"{pid}|{mx}|{my}"
                    order_seed = f"{seed}:{key}"
                    swapped = random.Random(hashlib.sha256(order_seed.encode()).digest()).random() < 0.5
                    row_x, row_y = rx[pid], ry[pid]
                    cur = con.execute(
                        "INSERT OR IGNORE INTO items (key, prompt_id, source, language, messages, model_x, model_y, "
                        "output_x, output_y, order_seed, swapped, k, created) "
                        "VALUES (?, ?, 'import', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, pid, row_x["language"] or row_y["language"], json.dumps(row_x["messages"],
                                                                                      ensure_ascii=False),
                         mx, my, row_x["response"], row_y["response"], order_seed, int(swapped), k, now))
                    added += cur.rowcount
                    existing += 1 - cur.rowcount
        return {"systems": [m for m, _ in systems], "rows_read": n_rows,
                "rows_used": len(common) * len(systems), "rows_rejected": n_rows - len(common) * len(systems),
                "missing_ids": {m: ids[:20] for m, ids in missing.items()},
                "items_added": added, "items_already_present": existing, "k": k}

    def item(self, item_id: int) -> Item:
        row = self._con().execute("SELECT * FROM items WHERE id=?", (item_id,)).fetchone()
        if row is None:
            raise StoreError(f"no item {item_id}")
        return _shown(row)

    # --- assignment ----------------------------------------------------------------------------
    def next_item(self, annotator: str, *, lease_s: float = DEFAULT_LEASE_S) -> Item | None:
        """The annotator's open item, else a new one with a free slot they have never seen."""
        now = time.time()
        with self._write() as con:
            # An unanswered assignment past its lease frees its slot (the annotator may get it again).
            con.execute("DELETE FROM assignments WHERE annotator=? AND assigned<? AND NOT EXISTS "
                        "(SELECT 1 FROM judgments j WHERE j.item_id=assignments.item_id AND j.annotator=?)",
                        (annotator, now - lease_s, annotator))
            row = con.execute(
                "SELECT i.* FROM assignments a JOIN items i ON i.id=a.item_id WHERE a.annotator=? "
                "AND i.source='import' AND NOT EXISTS (SELECT 1 FROM judgments j WHERE j.item_id=a.item_id "
                "AND j.annotator=a.annotator) ORDER BY a.assigned LIMIT 1", (annotator,)).fetchone()
            if row is not None:
                return _shown(row)
            salt = int.from_bytes(hashlib.sha256(annotator.encode()).digest()[:4], "big")
            row = con.execute(
                "SELECT i.*, (SELECT COUNT(*) FROM assignments a WHERE a.item_id=i.id AND (a.assigned>=? OR "
                "EXISTS (SELECT 1 FROM judgments j WHERE j.item_id=a.item_id AND j.annotator=a.annotator))) AS taken "
                "FROM items i WHERE i.source='import' "
                "AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.item_id=i.id AND a.annotator=?) "
                "AND NOT EXISTS (SELECT 1 FROM judgments j WHERE j.item_id=i.id AND j.annotator=?) "
                "AND taken < i.k ORDER BY taken DESC, ((i.id * 2654435761 + ?) % 4294967296) LIMIT 1",
                (now - lease_s, annotator, annotator, salt)).fetchone()
            if row is None:
                return None
            con.execute("INSERT INTO assignments (item_id, annotator, assigned) VALUES (?, ?, ?)",
                        (row["id"], annotator, now))
            return _shown(row)

    def submit(self, annotator: str, item_id: int, *, accept_a: int, accept_b: int, preference: int,
               comment: str | None = None) -> bool:
        """Record one judgment; True when stored, False when this annotator already judged the item."""
        if accept_a not in (0, 1) or accept_b not in (0, 1):
            raise StoreError("acceptability must be 0 or 1 for both outputs")
        if preference not in PREFERENCES:
            raise StoreError(f"preference must be one of {sorted(PREFERENCES)}, got {preference!r}")
        comment = (comment or "").strip() or None
        if comment and len(comment) > MAX_COMMENT_CHARS:
            raise StoreError(f"comment is longer than {MAX_COMMENT_CHARS} characters")
        now = time.time()
        with self._write() as con:
            a = con.execute("SELECT assigned FROM assignments WHERE item_id=? AND annotator=?",
                            (item_id, annotator)).fetchone()
            if a is None:
                raise StoreError(f"item {item_id} is not assigned to {annotator!r} (an idle assignment is "
                                 "released after a while; reload to get the next item)")
            item = con.execute("SELECT output_x, output_y, k FROM items WHERE id=?", (item_id,)).fetchone()
            if item["output_x"] is None or item["output_y"] is None:
                raise StoreError(f"item {item_id} is not complete yet (both outputs are needed)")
            mine = con.execute("SELECT 1 FROM judgments WHERE item_id=? AND annotator=?", (item_id, annotator)).fetchone()
            n = con.execute("SELECT COUNT(*) FROM judgments WHERE item_id=?", (item_id,)).fetchone()[0]
            if not mine and n >= item["k"]:
                raise StoreError(f"item {item_id} already has its {item['k']} judgments (it went to someone else "
                                 "after your assignment expired); reload for the next item")
            cur = con.execute(
                "INSERT OR IGNORE INTO judgments (item_id, annotator, accept_a, accept_b, preference, comment, "
                "seconds, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (item_id, annotator, accept_a, accept_b, preference, comment, now - a["assigned"], now))
            return cur.rowcount == 1

    def progress(self, annotator: str | None = None) -> dict[str, Any]:
        """Per annotator: judged items and items still open to them; overall item completion."""
        con = self._con()
        total = con.execute("SELECT COUNT(*), COALESCE(SUM(k), 0) FROM items WHERE source='import'").fetchone()
        done = con.execute("SELECT COUNT(*) FROM judgments j JOIN items i ON i.id=j.item_id "
                           "WHERE i.source='import'").fetchone()[0]
        complete = con.execute("SELECT COUNT(*) FROM items i WHERE i.source='import' AND "
                               "(SELECT COUNT(*) FROM judgments j WHERE j.item_id=i.id) >= i.k").fetchone()[0]
        who = [annotator] if annotator else self.annotators()
        per = {}
        for name in who:
            judged = con.execute("SELECT COUNT(*) FROM judgments j JOIN items i ON i.id=j.item_id "
                                 "WHERE j.annotator=? AND i.source='import'", (name,)).fetchone()[0]
            open_ = con.execute(
                "SELECT COUNT(*) FROM items i WHERE i.source='import' AND NOT EXISTS (SELECT 1 FROM judgments j "
                "WHERE j.item_id=i.id AND j.annotator=?) AND (SELECT COUNT(*) FROM judgments j "
                "WHERE j.item_id=i.id) < i.k", (name,)).fetchone()[0]
            arena = con.execute("SELECT COUNT(*) FROM judgments j JOIN items i ON i.id=j.item_id "
                                "WHERE j.annotator=? AND i.source='arena'", (name,)).fetchone()[0]
            per[name] = {"judged": judged, "open": open_, "arena_votes": arena}
        return {"items": total[0], "judgments_needed": total[1], "judgments": done, "items_complete": complete,
                "annotators": per}

    # --- arena ---------------------------------------------------------------------------------
    def new_arena_item(self, annotator: str, messages: list[dict[str, str]], model_x: str, model_y: str,
                       *, language: str | None = None, settings: dict[str, Any] | None = None) -> Item:
        """An item made on the fly by the arena: outputs come later (``set_output``), then one vote.

        ``settings``: the round's decoding settings (seed included), fixed for both sides.
        """
        now = time.time()
        nonce = secrets.token_hex(8)
        swapped = secrets.randbelow(2) == 1
        with self._write() as con:
            cur = con.execute(
                "INSERT INTO items (key, prompt_id, source, language, messages, model_x, model_y, output_x, output_y, "
                "order_seed, swapped, k, created) VALUES (?, ?, 'arena', ?, ?, ?, ?, NULL, NULL, ?, ?, 1, ?)",
                (f"arena-{nonce}", f"arena-{nonce}", language, json.dumps(messages, ensure_ascii=False),
                 model_x, model_y, f"arena:{nonce}", int(swapped), now))
            item_id = cur.lastrowid
            con.execute("INSERT INTO assignments (item_id, annotator, assigned) VALUES (?, ?, ?)",
                        (item_id, annotator, now))
            con.execute("INSERT INTO arena_rounds (item_id, annotator, settings, created) VALUES (?, ?, ?, ?)",
                        (item_id, annotator, json.dumps(settings or {}), now))
        return Item(item_id, f"arena-{nonce}", language, messages, "", "", "arena")

    def arena_rounds_since(self, annotator: str, since: float) -> int:
        """How many arena rounds ``annotator`` started after ``since`` (a per-user cap)."""
        return self._con().execute("SELECT COUNT(*) FROM arena_rounds WHERE annotator=? AND created>=?",
                                   (annotator, since)).fetchone()[0]

    def arena_side(self, item_id: int, side: str, annotator: str) -> ArenaSide:
        """Side ``a``/``b`` of an arena round owned by ``annotator``: its hidden model, the prompt, the
        round's fixed settings, and the stored answer once there is one (an answer is never replaced)."""
        if side not in ("a", "b"):
            raise StoreError(f"side must be 'a' or 'b', got {side!r}")
        row = self._con().execute(
            "SELECT i.*, r.settings AS round_settings FROM items i JOIN assignments a ON a.item_id=i.id "
            "LEFT JOIN arena_rounds r ON r.item_id=i.id WHERE i.id=? AND a.annotator=? AND i.source='arena'",
            (item_id, annotator)).fetchone()
        if row is None:
            raise StoreError(f"no arena round {item_id} for {annotator!r}")
        first = (side == "a") != bool(row["swapped"])
        return ArenaSide(model=row["model_x"] if first else row["model_y"], messages=json.loads(row["messages"]),
                         settings=json.loads(row["round_settings"] or "{}"),
                         output=row["output_x" if first else "output_y"])

    def set_output(self, item_id: int, side: str, text: str) -> None:
        if side not in ("a", "b"):
            raise StoreError(f"side must be 'a' or 'b', got {side!r}")
        with self._write() as con:
            row = con.execute("SELECT swapped FROM items WHERE id=? AND source='arena'", (item_id,)).fetchone()
            if row is None:
                raise StoreError(f"no arena round {item_id}")
            col = "output_x" if (side == "a") != bool(row["swapped"]) else "output_y"
            con.execute(f"UPDATE items SET {col}=? WHERE id=? AND {col} IS NULL", (text, item_id))  # first one wins

    # --- export --------------------------------------------------------------------------------
    def judgments(self, source: str = "all") -> Iterator[sqlite3.Row]:
        if source not in ("all", "import", "arena"):
            raise StoreError(f"source must be all, import or arena, got {source!r}")
        where = "" if source == "all" else "WHERE i.source=?"
        return iter(self.query(
            "SELECT j.*, i.key, i.prompt_id, i.source, i.language, i.model_x, i.model_y, i.swapped, i.order_seed "
            f"FROM judgments j JOIN items i ON i.id=j.item_id {where} ORDER BY j.id",
            () if source == "all" else (source,)))

    def export_rows(self, kind: str = "pairwise", source: str = "all") -> list[dict[str, Any]]:
        """Rows for ``polyinstruct judge-agreement``.

        ``pairwise``: one row per judgment, from system ``x``'s side (``model``) against
        ``baseline`` (system ``y``): ``preference`` win/loss/tie, ``strength`` 2 (clearly)
        or 1 (slightly), both acceptability marks, the display order and the comment.
        ``acceptability``: one row per judged output, ``score`` 1 (acceptable) or 0.
        """
        if kind not in ("pairwise", "acceptability"):
            raise StoreError(f"kind must be pairwise or acceptability, got {kind!r}")
        out = []
        for r in self.judgments(source):
            swapped = bool(r["swapped"])
            x_side = -r["preference"] if not swapped else r["preference"]  # > 0: x better
            acc_x, acc_y = (r["accept_b"], r["accept_a"]) if swapped else (r["accept_a"], r["accept_b"])
            if kind == "pairwise":
                out.append({"id": r["key"], "prompt_id": r["prompt_id"], "model": r["model_x"],
                            "baseline": r["model_y"], "language": r["language"], "annotator": r["annotator"],
                            "preference": "win" if x_side > 0 else "loss" if x_side < 0 else "tie",
                            "strength": abs(x_side), "accept_model": acc_x, "accept_baseline": acc_y,
                            "shown_first": r["model_y"] if swapped else r["model_x"], "order_seed": r["order_seed"],
                            "comment": r["comment"], "seconds": round(r["seconds"] or 0.0, 3), "source": r["source"]})
            else:
                for model, acc in ((r["model_x"], acc_x), (r["model_y"], acc_y)):
                    out.append({"id": r["prompt_id"], "model": model, "language": r["language"],
                                "annotator": r["annotator"], "score": acc, "item": r["key"], "source": r["source"]})
        return out


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one writer at a time, no lost update."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def __enter__(self) -> sqlite3.Connection:
        self.con.execute("BEGIN IMMEDIATE")
        return self.con

    def __exit__(self, exc_type, exc, tb) -> None:
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _shown(row: sqlite3.Row) -> Item:
    x, y = row["output_x"] or "", row["output_y"] or ""
    a, b = (y, x) if row["swapped"] else (x, y)
    return Item(row["id"], row["key"], row["language"], json.loads(row["messages"]), a, b, row["source"])


def _read_predictions(path: str, name: str | None) -> tuple[str, dict[str, dict[str, Any]]]:
    """One system's predictions by id; errors name the file, line and field."""
    if not Path(path).is_file():
        raise DataError("no such predictions file", path=path)
    rows: dict[str, dict[str, Any]] = {}
    model = name
    try:
        it = list(enumerate(iter_jsonl(path), start=1))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"not JSON lines: {e}", path=path) from None
    for line, r in it:
        if not isinstance(r, dict):
            raise DataError("each line must be a JSON object", path=path, line=line)
        if "id" not in r:
            raise DataError("missing field", path=path, line=line, field="id")
        pid = str(r["id"])
        if pid in rows:
            raise DataError(f"duplicate id {pid!r}", path=path, line=line, field="id")
        if not isinstance(r.get("response"), str):
            raise DataError("missing or not a string", path=path, line=line, field="response")
        messages = r.get("messages")
        if messages is None and isinstance(r.get("prompt"), str):
            messages = [{"role": "user", "content": r["prompt"]}]
        if (not isinstance(messages, list) or not messages
                or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)):
            raise DataError("needs 'messages' (a list of {role, content}) or a 'prompt' string", path=path,
                            line=line, field="messages")
        if name is None:
            m = r.get("model")
            if not m:
                raise DataError("missing field (or name the system with NAME=PATH)", path=path, line=line,
                                field="model")
            if model is None:
                model = str(m)
            elif str(m) != model:
                raise DataError(f"one file must hold one system; found {m!r} after {model!r}", path=path,
                                line=line, field="model")
        rows[pid] = {"messages": [{"role": str(m.get("role", "user")), "content": m["content"]} for m in messages],
                     "response": r["response"], "language": r.get("language")}
    if not rows:
        raise DataError("no predictions in file", path=path)
    return str(model), rows
