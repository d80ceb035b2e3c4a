"""The judging loop shared by every judge: cache lookup, bounded calls, parse retries.

A request is a judge conversation plus a parser. Each distinct key is asked at
most once per round; a reply that does not parse is asked again up to
``max_parse_retries`` times and then cached as unparsed (never guessed). Transport
failures that survive the backend's own retries are returned as errors and *not*
cached, so the next run tries them again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from polyinstruct.errors import PolyinstructError
from polyinstruct.infer.backend import DecodingParams, Generation
from polyinstruct.judge.cache import JudgmentCache

log = logging.getLogger(__name__)


@dataclass
class Request:
    key: str
    messages: list[dict[str, str]]
    parse: Callable[[str], Any]  # returns None when the reply holds no verdict


def generate_each(backend: Any, conversations: list[list[dict[str, str]]], params: DecodingParams,
                  on_result: Callable[[int, Generation | Exception], None], batch_size: int = 8) -> None:
    """Per-item results from any backend: HTTP backends natively, local ones batch by batch."""
    if hasattr(backend, "generate_each"):
        backend.generate_each(conversations, params, on_result=on_result)
        return
    for start in range(0, len(conversations), batch_size):
        chunk = conversations[start:start + batch_size]
        try:
            outs: list[Any] = list(backend.generate(chunk, params))
        except PolyinstructError as e:
            outs = [e] * len(chunk)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory: these items fail, the run goes on
            log.warning("judge backend failed on items %d-%d: %s: %s", start, start + len(chunk) - 1,
                        type(e).__name__, e)
            outs = [PolyinstructError(f"{type(e).__name__}: {e}")] * len(chunk)
        if len(outs) != len(chunk):
            outs = [PolyinstructError(f"backend returned {len(outs)} replies for {len(chunk)} prompts")] * len(chunk)
        for j, g in enumerate(outs):
            on_result(start + j, g)


def ask_all(backend: Any, requests: list[Request], params: DecodingParams, cache: JudgmentCache, *,
            max_parse_retries: int = 2, retry_unparsed: bool = False,
            on_done: Callable[[int], None] | None = None) -> dict[str, dict[str, Any]]:
    """Answer every request; returns ``{key: record}`` with ``value``, ``parsed``, ``raw``,
    ``attempts``, ``cached`` and ``error`` (None unless the call failed for good)."""
    out: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    pending: list[Request] = []
    seen: set[str] = set()
    for r in requests:
        if r.key in seen:
            continue
        seen.add(r.key)
        hit = cache.get(r.key)
        if hit is not None and (hit.get("parsed") or not retry_unparsed):
            out[r.key] = dict(hit, cached=True, error=None)
        else:
            pending.append(r)
    if on_done and out:
        on_done(len(out))
    attempts: dict[str, int] = {r.key: 0 for r in pending}
    raws: dict[str, list[str]] = {r.key: [] for r in pending}

    for rnd in range(max_parse_retries + 1):
        if not pending:
            break
        last_round = rnd == max_parse_retries
        batch = pending

        def on_result(i: int, res: Generation | Exception, batch: list[Request] = batch,
                      last_round: bool = last_round) -> None:
            r = batch[i]
            with lock:
                attempts[r.key] += 1
            if isinstance(res, Exception):
                rec = {"value": None, "parsed": False, "raw": None, "attempts": attempts[r.key],
                       "cached": False, "error": str(res)}
                with lock:
                    out[r.key] = rec
                if on_done:
                    on_done(1)
                return
            raws[r.key].append(res.text)
            value = r.parse(res.text)
            if value is None and not last_round:
                log.debug("unparsable judge reply (attempt %d): %.120r", attempts[r.key], res.text)
                return
            rec = {"value": value, "parsed": value is not None, "raw": res.text,
                   "attempts": attempts[r.key], "usage": [res.prompt_tokens, res.completion_tokens]}
            if value is None:
                rec["unparsed_replies"] = raws[r.key]
            cache.put(r.key, rec)
            with lock:
                out[r.key] = dict(rec, cached=False, error=None)
            if on_done:
                on_done(1)

        generate_each(backend, [r.messages for r in batch], params, on_result)
        pending = [r for r in batch if r.key not in out]
    return out
