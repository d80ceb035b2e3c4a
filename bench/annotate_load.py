"""Bounded load test of ``polyinstruct annotate serve`` on loopback.

20 annotators log in at once and each submits 50 judgments through the real HTML
forms (GET the next item, POST the judgment); one submission in ten is sent twice,
like a double click. Afterwards the database is read directly: every acknowledged
judgment must be there exactly once (0 lost, 0 duplicated), no annotator may have
seen an item twice and no item may exceed k annotators. Reports p50/p90/p99 latency
of submitting and of fetching the next item. The peer, measured the same way in the
same run, is the same app on SQLite's rollback journal (``--journal-mode delete``)
instead of WAL. The server runs as a subprocess; the last line is one JSON object.

Login flood (``--flood N``, default 40): the WAL run is repeated while N clients send
wrong passwords as fast as they can (half for an account with the library's default
argon2 cost, about 64 MiB per check, half for unknown names, which cost the same), from
the moment the annotators have logged in until they finish. Reported: annotators' p99
with and without the flood in the same run, the flood's answers (401/429), and the
server's peak RSS (sampled every 50 ms) in each phase. ``--peer-root DIR`` also runs the
flood phase against the server of another checkout (e.g. the code before the login
limits) as a peer.

    python bench/annotate_load.py            # 20 annotators x 50 judgments, WAL and peer, flood of 40
    python bench/annotate_load.py --quick    # 5 annotators x 10 judgments, WAL and peer, flood of 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ITEM_RE = re.compile(r'name="item_id" value="(\d+)"')
CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] * 1000, 2)


def make_db(path: Path, n_annotators: int, per_annotator: int, k: int, journal_mode: str) -> dict[str, str]:
    """Two systems' predictions for enough prompts, imported with k annotators per item."""
    from polyinstruct.annotate.store import Store

    n_items = max(per_annotator + 5, (n_annotators * per_annotator) // k + 20)
    folder = path.parent
    for sys_name in ("sys-x", "sys-y"):
        with open(folder / f"{sys_name}.jsonl", "w", encoding="utf-8") as f:
            for i in range(n_items):
                f.write(json.dumps({"id": f"p{i}", "prompt": f"Prompt {i}: explain item {i}.", "language": "en",
                                    "response": f"{sys_name} answer to {i}. " * 5, "model": sys_name}) + "\n")
    # Cheap argon2 settings: this bench measures judgments, not password hashing at login.
    store = Store(path, journal_mode=journal_mode, hasher_params={"time_cost": 1, "memory_cost": 1024, "parallelism": 1})
    store.import_predictions([str(folder / "sys-x.jsonl"), str(folder / "sys-y.jsonl")], k=k)
    users = {f"ann{i:02d}": f"password-{i:02d}" for i in range(n_annotators)}
    for u, pw in users.items():
        store.add_annotator(u, pw)
    store.close()
    victim = Store(path, journal_mode=journal_mode)  # the library's default argon2 cost, as real accounts have
    victim.add_annotator("victim", "victim-password-1")
    victim.close()
    return users


async def annotator(url: str, name: str, password: str, n: int, deadline: float, rng: random.Random,
                    stats: dict, logged_in: asyncio.Barrier, go: asyncio.Event, max_s: float = 0.0) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        tok = CSRF_RE.search((await c.get("/login")).text).group(1)
        # a fresh connection after the wait below (a kept-alive one may be closed by the server meanwhile)
        r = await c.post("/login", data={"username": name, "password": password, "csrf": tok},
                         headers={"Connection": "close"})
        await logged_in.wait()  # the flood (if any) starts once everyone is in,
        await go.wait()  # and the annotators once the flood runs
        if r.status_code != 303 or r.headers.get("location") != "/annotate":
            stats["errors"].append(f"{name}: login failed ({r.status_code})")
            return
        for _ in range(n):
            if time.time() > deadline:
                stats["timed_out"] += 1
                return
            try:
                t0 = time.perf_counter()
                page = await c.get("/annotate")
                stats["next_s"].append(time.perf_counter() - t0)
                m = ITEM_RE.search(page.text)
                if not m:
                    stats["errors"].append(f"{name}: no item left after {stats['acked'].get(name, 0)}")
                    return
                item = int(m.group(1))
                form = {"csrf": CSRF_RE.search(page.text).group(1), "item_id": str(item),
                        "accept_a": str(rng.randint(0, 1)), "accept_b": str(rng.randint(0, 1)),
                        "preference": str(rng.randint(-2, 2))}
                t0 = time.perf_counter()
                r = await c.post("/annotate", data=form, follow_redirects=False)
                stats["submit_s"].append(time.perf_counter() - t0)
                if r.status_code != 303 or not r.headers.get("location", "").endswith("saved=1"):
                    stats["errors"].append(f"{name}: item {item}: {r.status_code} {r.headers.get('location')}")
                    continue
                stats["acked"].setdefault(name, []).append(item)
                if rng.random() < 0.1:  # a double click: must not count twice
                    r2 = await c.post("/annotate", data=form, follow_redirects=False)
                    stats["double_submits"] += 1
                    if r2.headers.get("location", "").endswith("saved=dup"):
                        stats["double_submits_rejected"] += 1
            except httpx.HTTPError as e:  # the server under load dropped the connection
                stats["errors"].append(f"{name}: {type(e).__name__} on {e.request.method} {e.request.url.path} "
                                       f"after {time.time() - deadline + max_s:.1f} s")


async def bad_logins(url: str, i: int, stop: asyncio.Event, flood: dict) -> None:
    """One flooding client: wrong passwords, back to back, until the annotators are done."""
    import httpx

    name = "victim" if i % 2 == 0 else f"nobody{i}"
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        while not stop.is_set():
            try:
                tok = CSRF_RE.search((await c.get("/login")).text).group(1)
                t0 = time.perf_counter()
                r = await c.post("/login", data={"username": name, "password": f"wrong-{i}", "csrf": tok})
                flood["login_s"].append(time.perf_counter() - t0)
                flood["status"][str(r.status_code)] = flood["status"].get(str(r.status_code), 0) + 1
            except (httpx.HTTPError, AttributeError) as e:
                flood["status"][type(e).__name__] = flood["status"].get(type(e).__name__, 0) + 1
                await asyncio.sleep(0.05)


def flood_process(url: str, clients: int, stop, ready, out) -> None:
    """The flood in its own process, so the annotators' client loop (whose latencies are measured)
    does not also carry the flooding clients."""
    flood = {"login_s": [], "status": {}}

    async def main() -> None:
        done = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.05)
            done.set()

        async def signal() -> None:
            while not flood["status"]:  # the flood is under way once its first answers are in
                await asyncio.sleep(0.05)
            ready.set()

        await asyncio.gather(watch(), signal(), *(bad_logins(url, i, done, flood) for i in range(clients)))

    asyncio.run(main())
    out.put(flood)


async def run_load(url: str, users: dict[str, str], per_annotator: int, max_seconds: float, seed: int,
                   flood_clients: int = 0) -> dict:
    import multiprocessing as mp

    stats = {"next_s": [], "submit_s": [], "acked": {}, "errors": [], "timed_out": 0, "double_submits": 0,
             "double_submits_rejected": 0}
    deadline = time.time() + max_seconds
    logged_in, go = asyncio.Barrier(len(users) + 1), asyncio.Event()
    t0 = time.perf_counter()
    work = asyncio.gather(*(annotator(url, u, pw, per_annotator, deadline, random.Random(f"{seed}:{u}"), stats,
                                      logged_in, go, max_seconds) for u, pw in users.items()))
    await logged_in.wait()
    flood = {"login_s": [], "status": {}}
    if flood_clients:
        ctx = mp.get_context("spawn")
        stop, out = ctx.Event(), ctx.Queue()
        ready = ctx.Event()
        proc = ctx.Process(target=flood_process, args=(url, flood_clients, stop, ready, out), daemon=True)
        proc.start()
        await asyncio.get_running_loop().run_in_executor(None, ready.wait, 60)
    go.set()
    await work
    if flood_clients:
        stop.set()
        flood = await asyncio.get_running_loop().run_in_executor(None, out.get)
        proc.join(30)
    stats["wall_s"] = time.perf_counter() - t0
    stats["flood"] = flood
    return stats


class PeakRSS:
    """Samples a process's resident memory every 50 ms; ``peak`` in MiB."""

    def __init__(self, pid: int):
        import psutil

        self.proc, self.peak, self.first = psutil.Process(pid), 0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            self.first = self.first or rss
            self.peak = max(self.peak, rss)
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


async def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    end = time.time() + timeout
    async with httpx.AsyncClient() as c:
        while time.time() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if (await c.get(url + "/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("annotation server did not become ready")


def check_db(db: Path, acked: dict[str, list[int]], k: int) -> dict:
    con = sqlite3.connect(db)
    rows = con.execute("SELECT annotator, item_id FROM judgments").fetchall()
    stored = set(rows)
    acked_pairs = {(a, i) for a, items in acked.items() for i in items}
    over_k = con.execute("SELECT COUNT(*) FROM (SELECT item_id FROM judgments GROUP BY item_id "
                         "HAVING COUNT(*) > ?)", (k,)).fetchone()[0]
    con.close()
    return {"rows": len(rows), "acknowledged": sum(len(v) for v in acked.values()),
            "lost": len(acked_pairs - stored), "duplicated": len(rows) - len(stored),
            "unacknowledged_rows": len(stored - acked_pairs),
            "annotator_saw_item_twice": sum(len(v) - len(set(v)) for v in acked.values()), "items_over_k": over_k}


def one_mode(journal_mode: str, n_ann: int, per: int, k: int, max_seconds: float, seed: int,
             flood: int = 0, root: Path = ROOT) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ann.sqlite"
        users = make_db(db, n_ann, per, k, journal_mode)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(root)}
        proc = subprocess.Popen([sys.executable, "-m", "polyinstruct", "annotate", "serve", str(db), "--port",
                                 str(port), "--journal-mode", journal_mode], env=env, cwd=str(root),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            asyncio.run(wait_ready(url, proc))
            with PeakRSS(proc.pid) as rss:
                stats = asyncio.run(run_load(url, users, per, max_seconds, seed, flood))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        check = check_db(db, stats["acked"], k)
    n = check["acknowledged"]
    return {"journal_mode": journal_mode, "annotators": n_ann, "judgments_each": per, "k": k,
            "expected": n_ann * per, **check, "errors": len(stats["errors"]), "first_errors": stats["errors"][:3],
            "timed_out": stats["timed_out"], "double_submits": stats["double_submits"],
            "double_submits_rejected": stats["double_submits_rejected"],
            "submit_ms": {"p50": percentile(stats["submit_s"], 50), "p90": percentile(stats["submit_s"], 90),
                          "p99": percentile(stats["submit_s"], 99)},
            "next_item_ms": {"p50": percentile(stats["next_s"], 50), "p90": percentile(stats["next_s"], 90),
                             "p99": percentile(stats["next_s"], 99)},
            "judgments_per_s": round(n / stats["wall_s"], 1) if stats["wall_s"] else None,
            "wall_s": round(stats["wall_s"], 2),
            "server_rss_mib": {"start": round((rss.first or 0) / 2**20, 1), "peak": round(rss.peak / 2**20, 1)},
            "flood": {"clients": flood, "answers": stats["flood"]["status"],
                      "login_ms": {"p50": percentile(stats["flood"]["login_s"], 50),
                                   "p99": percentile(stats["flood"]["login_s"], 99)}} if flood else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 annotators x 10 judgments")
    ap.add_argument("--annotators", type=int, default=20)
    ap.add_argument("--judgments", type=int, default=50, help="judgments per annotator")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=240, help="per mode; clients stop after this")
    ap.add_argument("--no-peer", action="store_true", help="WAL only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flood", type=int, default=40, help="concurrent bad-login clients in the flood phase (0: none)")
    ap.add_argument("--peer-root", help="also run the flood phase against the server of this checkout")
    args = ap.parse_args()
    n_ann, per = (5, 10) if args.quick else (args.annotators, args.judgments)
    modes = ["wal"] if args.no_peer else ["wal", "delete"]
    results = {}
    for mode in modes:
        r = one_mode(mode, n_ann, per, args.k, args.max_seconds, args.seed)
        results[mode] = r
        print(f"{mode:6s} {r['acknowledged']}/{r['expected']} acknowledged, rows {r['rows']}, lost {r['lost']}, "
              f"duplicated {r['duplicated']}, double submits {r['double_submits_rejected']}/{r['double_submits']} "
              f"rejected, errors {r['errors']}, submit p50/p90/p99 {r['submit_ms']['p50']}/{r['submit_ms']['p90']}/"
              f"{r['submit_ms']['p99']} ms, next item p99 {r['next_item_ms']['p99']} ms, "
              f"{r['judgments_per_s']} judgments/s, server RSS peak {r['server_rss_mib']['peak']} MiB", flush=True)
    phases = [("wal+flood", ROOT)] if args.flood else []
    if args.flood and args.peer_root:
        phases.append(("peer+flood", Path(args.peer_root).resolve()))
    for label, root in phases:
        r = one_mode("wal", n_ann, per, args.k, args.max_seconds, args.seed, flood=args.flood, root=root)
        results[label] = r
        print(f"{label:10s} {r['acknowledged']}/{r['expected']} acknowledged, errors {r['errors']}, submit p99 "
              f"{r['submit_ms']['p99']} ms, next item p99 {r['next_item_ms']['p99']} ms, server RSS peak "
              f"{r['server_rss_mib']['peak']} MiB (start {r['server_rss_mib']['start']}), flood answers "
              f"{r['flood']['answers']}", flush=True)
    ok = all(r["lost"] == 0 and r["duplicated"] == 0 and r["acknowledged"] == r["expected"] and r["items_over_k"] == 0
             and r["annotator_saw_item_twice"] == 0 for label, r in results.items() if label != "peer+flood")
    print(json.dumps({"bench": "annotate_load", "ok": ok, "cpu_count": os.cpu_count(), **results}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
