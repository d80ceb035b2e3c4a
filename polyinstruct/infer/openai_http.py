"""``openai_http``: a GenerationBackend for any OpenAI-compatible chat endpoint.

Works with hosted APIs (key read from an environment variable, never from a
config file) and with ``polyinstruct serve`` / vLLM / llama.cpp servers. What a
long judging run needs from a client is here: per-request timeouts, retries with
exponential backoff and full jitter on timeouts, connection errors, 408, 429 and
5xx (a valid ``Retry-After`` header wins; a negative, NaN or unparsable one is
ignored), a bounded thread pool, and token/cost counting. Other 4xx errors are the
caller's bug and fail at once. Whatever a server replies (bad headers, a body that
does not match its ``Content-Encoding``, HTML, truncated JSON, a reset connection)
becomes a retry or, for good, a per-item ``HTTPBackendError``: never an exception
that ends the whole run. When the server cannot be reached at all (no request has
ever succeeded and an item failed to connect ``UNREACHABLE_RETRIES + 1`` times) or refuses the
credentials (401/403), the remaining items fail at once with the same error instead
of each repeating the retries.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from polyinstruct.errors import ConfigError, PolyinstructError
from polyinstruct.infer.backend import DecodingParams, Generation

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})
UNREACHABLE_RETRIES = 2  # retries of "cannot connect" before any request to the server has succeeded


class HTTPBackendError(PolyinstructError):
    """A request failed for good (non-retryable status, or retries exhausted)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        self.status, self.retryable = status, retryable
        super().__init__(message)


@dataclass
class Usage:
    """Counters a run reports; thread-safe through ``add``."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for k, v in deltas.items():
                setattr(self, k, getattr(self, k) + v)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            d = {k: getattr(self, k) for k in ("requests", "retries", "failures", "prompt_tokens",
                                                "completion_tokens", "cost_usd")}
        d["cost_usd"] = round(d["cost_usd"], 6)
        return d


class OpenAIHTTPBackend:
    """Chat completions over HTTP. ``prices``: ``{model: {"prompt": usd_per_1M, "completion": usd_per_1M}}``."""

    name = "openai_http"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0, max_retries: int = 6,
                 backoff_base: float = 1.0, backoff_max: float = 60.0, concurrency: int = 8,
                 prices: dict[str, dict[str, float]] | None = None, extra_body: dict[str, Any] | None = None,
                 seed: int | None = None, rng: random.Random | None = None):
        import httpx

        checks = {"concurrency": concurrency >= 1 if isinstance(concurrency, int) else False,
                  "timeout": _finite(timeout) and timeout > 0,
                  "max_retries": isinstance(max_retries, int) and max_retries >= 0,
                  "backoff_base": _finite(backoff_base) and backoff_base >= 0,
                  "backoff_max": _finite(backoff_max) and backoff_max >= 0}
        rules = {"concurrency": "an integer >= 1", "timeout": "a number > 0 (seconds)",
                 "max_retries": "an integer >= 0", "backoff_base": "a number >= 0 (seconds)",
                 "backoff_max": "a number >= 0 (seconds)"}
        for name, ok in checks.items():
            if not ok:
                value = locals()[name]
                raise ConfigError(f"must be {rules[name]}, got {value!r}", field=f"backend.{name}")
        self.model, self.api_key_env = model, api_key_env
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.concurrency = concurrency
        self.prices = prices or {}
        self.extra_body = dict(extra_body or {})
        self.usage = Usage()
        self._rng = rng or random.Random(seed)
        self._rng_lock = threading.Lock()
        self._ever_ok = False  # set after the first successful reply
        self._fatal: str | None = None  # set when every later request would fail the same way
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout),
                                    limits=httpx.Limits(max_connections=concurrency + 2))

    @property
    def model_name(self) -> str:
        return self.model

    # -- request building -------------------------------------------------------------
    def _body(self, messages: list[dict[str, str]], params: DecodingParams, stream: bool = False) -> dict:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m["role"], "content": f"{m['content']}\n\n{m['input']}" if m.get("input")
                          else m["content"]} for m in messages],  # Alpaca input: after the content (docs/data.md)
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature if params.do_sample else 0.0,
        }
        if params.do_sample and params.top_p < 1.0:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        # Non-OpenAI sampling fields are sent only when set: vLLM and `polyinstruct serve` read them.
        if params.top_k:
            body["top_k"] = params.top_k
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if stream:
            body["stream"] = True
        body.update(self.extra_body)
        return body

    def _sleep_for(self, attempt: int, retry_after: str | None) -> float:
        wait = parse_retry_after(retry_after)
        if wait is not None:
            return min(wait, self.backoff_max)
        cap = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        with self._rng_lock:
            return self._rng.uniform(0, cap)  # "full jitter"

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.prices.get(self.model)
        if not price:
            return 0.0
        return (prompt_tokens * price.get("prompt", 0.0) + completion_tokens * price.get("completion", 0.0)) / 1e6

    # -- one request with retries -------------------------------------------------------
    def complete(self, messages: list[dict[str, str]], params: DecodingParams) -> Generation:
        """One chat completion, retried on transient failures; raises HTTPBackendError."""
        import httpx

        body = self._body(messages, params)
        last = "no attempt"
        connect_only = True  # every failure so far was "could not connect"
        for attempt in range(self.max_retries + 1):
            if self._fatal is not None:
                self.usage.add(failures=1)
                raise HTTPBackendError(self._fatal)
            if attempt:
                self.usage.add(retries=1)
            self.usage.add(requests=1)
            retry_after = None
            try:
                resp = self._client.post("/chat/completions", json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                last = f"cannot connect to {self.base_url} ({type(e).__name__}: {e})"
            except httpx.HTTPError as e:  # timeouts, resets, protocol errors, undecodable bodies
                last = f"{type(e).__name__}: {e}"
                connect_only = False
            else:
                connect_only = False
                status = resp.status_code
                if status == 200:
                    try:
                        gen = self._parse(resp.json())
                        self._ever_ok = True
                        return gen
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
                        last = f"malformed response body ({type(e).__name__}: {e}): {_snippet(resp)}"  # retry
                elif status in RETRY_STATUS:
                    last = f"HTTP {status}: {_snippet(resp)}"
                    retry_after = resp.headers.get("retry-after")
                else:
                    msg = f"{self.base_url}/chat/completions returned HTTP {status}: {_snippet(resp, 500)}"
                    if status in (401, 403):
                        msg += " (check the API key in $" + self.api_key_env + ")" if self.api_key_env else ""
                        self._fatal = msg
                    self.usage.add(failures=1)
                    raise HTTPBackendError(msg, status=status)
            if connect_only and not self._ever_ok and attempt >= min(self.max_retries, UNREACHABLE_RETRIES):
                break  # nothing has ever answered there: a wrong URL or no network, not a blip
            if attempt < self.max_retries:
                delay = self._sleep_for(attempt, retry_after)
                log.debug("retrying after %s (attempt %d, sleeping %.2fs)", last, attempt + 1, delay)
                time.sleep(delay)
        self.usage.add(failures=1)
        msg = f"{self.base_url}: giving up after {attempt + 1} attempts; last error: {last}"
        if connect_only and not self._ever_ok:
            self._fatal = msg  # nothing answers there: the other items need not wait for the same retries
        raise HTTPBackendError(msg, retryable=True)

    def _parse(self, data: dict) -> Generation:
        choice = data["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("message.content is not a string")
        usage = data.get("usage") or {}
        pt, ct = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        self.usage.add(prompt_tokens=pt, completion_tokens=ct, cost_usd=self._cost(pt, ct))
        finish = choice.get("finish_reason") or "stop"
        return Generation(text=text, prompt_tokens=pt, completion_tokens=ct,
                          finish_reason="length" if finish == "length" else "stop")

    # -- GenerationBackend --------------------------------------------------------------
    def generate_each(self, conversations: list[list[dict[str, str]]], params: DecodingParams,
                      on_result: Callable[[int, Generation | Exception], None] | None = None
                      ) -> list[Generation | Exception]:
        """Like ``generate`` but a failed item yields its exception instead of failing the batch.

        ``on_result(i, result)`` is called (from worker threads) as each item finishes,
        so callers can cache results immediately and resume after a kill.
        """
        results: list[Generation | Exception | None] = [None] * len(conversations)

        def work(i: int) -> None:
            try:
                res: Generation | Exception = self.complete(conversations[i], params)
            except HTTPBackendError as e:
                res = e
            except Exception as e:  # noqa: BLE001 - one item's surprise must not end the run
                log.debug("unexpected error on item %d", i, exc_info=True)
                self.usage.add(failures=1)
                res = HTTPBackendError(f"{self.base_url}: unexpected {type(e).__name__}: {e}")
            results[i] = res
            if on_result is not None:
                on_result(i, res)

        if self.concurrency == 1 or len(conversations) <= 1:
            for i in range(len(conversations)):
                work(i)
        else:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                for fut in [pool.submit(work, i) for i in range(len(conversations))]:
                    fut.result()
        return results  # type: ignore[return-value]

    def generate(self, conversations: list[list[dict[str, str]]], params: DecodingParams) -> list[Generation]:
        """One reply per conversation, in order; raises the first failure after retries."""
        out = self.generate_each(conversations, params)
        for r in out:
            if isinstance(r, Exception):
                raise r
        return out  # type: ignore[return-value]

    def stream(self, conversation: list[dict[str, str]], params: DecodingParams) -> Iterator[str]:
        """Server-sent events; no retries once text has started flowing."""
        body = self._body(conversation, params, stream=True)
        self.usage.add(requests=1)
        with self._client.stream("POST", "/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                resp.read()
                raise HTTPBackendError(f"HTTP {resp.status_code}: {resp.text[:500]}", status=resp.status_code)
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    delta = json.loads(payload)["choices"][0].get("delta", {}).get("content")
                except (ValueError, KeyError, IndexError) as e:
                    raise HTTPBackendError(f"malformed stream chunk: {payload[:200]}") from e
                if delta:
                    yield delta

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "OpenAIHTTPBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _count(x: Any) -> int:
    """A token count from a reply's ``usage``; anything but a non-negative integer counts as 0."""
    try:
        n = int(x or 0)
    except (TypeError, ValueError, OverflowError):
        return 0
    return n if n >= 0 else 0


def _snippet(resp: Any, limit: int = 200) -> str:
    """The start of a reply body for an error message, whatever its encoding."""
    try:
        text = resp.text
    except Exception:  # noqa: BLE001 - a body that cannot be decoded still makes a message
        text = repr(resp.content[:limit])
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None when
    it is missing or unusable (negative, NaN, infinite, garbage), so the caller's backoff applies."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, secs)
    if not math.isfinite(secs) or secs < 0:
        return None
    return secs
