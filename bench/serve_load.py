"""Bounded load test of ``polyinstruct serve`` on loopback.

200 chat requests (greedy, ``--max-tokens`` new tokens each) at concurrency 16 against
a server started as a subprocess with the tiny model. The peer, measured the same
way in the same script, is the same server with batching off (``--batch-size 1``:
requests wait their turn one by one). Prints error counts and p50/p90/p99 latency;
the last line is one JSON object with the figures.

    python bench/serve_load.py            # 200 requests, concurrency 16, both servers
    python bench/serve_load.py --quick    # batched server only, under a minute
    python bench/serve_load.py --bulk     # batched server, normal load alone and while a second
                                          # client keeps sending 200-prompt x 2000-token requests
                                          # (refused by the per-request cap): p99 of both runs

With ``--bulk`` the peer is the same server under the same normal load without the
bulk client, so the difference is what refused bulk requests cost normal users.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, batch_size: int, threads: int | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "polyinstruct", "serve", str(model), "--template", "tulu", "--port", str(port),
           "--batch-size", str(batch_size), "--model-name", "tiny", "--device", "cpu"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.time() + timeout
    async with httpx.AsyncClient() as c:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if (await c.get(url + "/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("server did not become ready")


BULK = {"model": "tiny", "prompt": ["Write a very long story about the sea."] * 200, "max_tokens": 2000}


async def bulk_client(url: str, stop: asyncio.Event, counts: dict) -> None:
    """Sends BULK back to back until ``stop``; counts refusals (400) and anything else."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while not stop.is_set():
            try:
                r = await client.post("/v1/completions", json=BULK)
                counts["refused" if r.status_code == 400 else f"status_{r.status_code}"] += 1
            except Exception as e:  # noqa: BLE001 - counted, reported
                counts[type(e).__name__] += 1
            await asyncio.sleep(0)


async def load(url: str, n: int, concurrency: int, max_tokens: int, bulk: bool = False) -> dict:
    import collections

    import httpx
    from generate_throughput import prompts

    convs = prompts(n)
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    tokens = 0

    async def one(client: httpx.AsyncClient, conv) -> None:
        nonlocal tokens
        async with sem:
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/chat/completions", json={
                    "model": "tiny", "messages": conv, "max_tokens": max_tokens, "temperature": 0})
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
                    return
                body = r.json()
                tokens += body["usage"]["completion_tokens"]
                assert isinstance(body["choices"][0]["message"]["content"], str)
            except Exception as e:  # noqa: BLE001 - counted, reported
                errors.append(repr(e))
                return
            latencies.append(time.perf_counter() - t0)

    stop, bulk_counts = asyncio.Event(), collections.Counter()
    abuser = asyncio.ensure_future(bulk_client(url, stop, bulk_counts)) if bulk else None
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=300,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(one(client, c) for c in convs))
    wall = time.perf_counter() - t0
    if abuser is not None:
        stop.set()
        await abuser
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 1) if lat else float("nan")

    return {"requests": n, "concurrency": concurrency, "ok": len(lat), "errors": len(errors),
            "error_samples": errors[:3], "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": round(lat[-1] * 1000, 1) if lat else None, "wall_s": round(wall, 2),
            "req_per_s": round(n / wall, 2), "completion_tok_s": round(tokens / wall, 1),
            **({"bulk_requests": dict(bulk_counts)} if bulk else {})}


def run_server(model: Path, batch_size: int, args, bulk: bool = False) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(model, port, batch_size, args.threads)
    try:
        asyncio.run(wait_ready(url, proc))
        res = asyncio.run(load(url, args.requests, args.concurrency, args.max_tokens, bulk=bulk))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    res["server_batch_size"] = batch_size
    res["bulk"] = bulk
    extra = f" | bulk {res['bulk_requests']}" if bulk else ""
    print(f"[server batch {batch_size:>2}{' +bulk' if bulk else ''}] {res['ok']}/{res['requests']} ok, {res['errors']} errors | "
          f"p50 {res['p50_ms']} ms  p90 {res['p90_ms']} ms  p99 {res['p99_ms']} ms | "
          f"{res['req_per_s']} req/s, {res['completion_tok_s']} tok/s{extra}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batched server only")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, help="OMP threads for the server process")
    ap.add_argument("--bulk", action="store_true",
                    help="normal load alone, then with a client sending refused 200 x 2000-token requests")
    args = ap.parse_args()
    from generate_throughput import build_model

    results: dict = {"bench": "serve_load", "runs": []}
    with tempfile.TemporaryDirectory() as d:
        model = build_model("tiny", Path(d))
        results["runs"].append(run_server(model, 16, args))
        if args.bulk:
            results["runs"].append(run_server(model, 16, args, bulk=True))
            alone, abused = results["runs"][0], results["runs"][1]
            results["p99_ms_normal_alone"] = alone["p99_ms"]
            results["p99_ms_normal_with_refused_bulk"] = abused["p99_ms"]
            results["bulk_not_refused"] = sum(v for k, v in abused["bulk_requests"].items() if k != "refused")
        elif not args.quick:
            results["runs"].append(run_server(model, 1, args))
    results["errors"] = sum(r["errors"] for r in results["runs"]) + results.get("bulk_not_refused", 0)
    results["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results))
    if results["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
