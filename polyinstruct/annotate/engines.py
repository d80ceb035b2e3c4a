"""The models the browser chat and arena talk to.

An engine is a named ``GenerationBackend`` (docs/inference.md): a run directory or
model folder loaded in process (``hf``), or any OpenAI-compatible endpoint
(``openai_http``, e.g. ``polyinstruct serve``). Only engines named on the command
line can be reached from the page, so the page cannot make the server fetch
arbitrary URLs. Streaming runs the backend's ``stream`` in a thread and hands the
pieces to the event loop; a local model generates one reply at a time, and the model
is given back whatever raises (a template error, a failed generation, a client gone).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from polyinstruct.errors import ConfigError
from polyinstruct.infer.backend import DecodingParams, GenerationBackend
from polyinstruct.infer.context import check_messages_fit
from polyinstruct.infer.decoding import validate_decoding

MAX_NEW_TOKENS_LIMIT = 2048
_END = object()


@dataclass
class Engine:
    name: str
    backend: GenerationBackend
    exclusive: bool = True  # a local model: one generation at a time
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check_prompt(self, messages: list[dict[str, str]], params: DecodingParams) -> int | None:
        """Refuse (``ConfigError`` naming ``messages``) a prompt the model's template rejects or that
        does not fit its context with ``max_tokens`` more: the same check as ``polyinstruct serve``.
        Runs before the model is locked, so a refused prompt never holds it."""
        return check_messages_fit(self.backend, messages, params.max_new_tokens)

    async def stream(self, messages: list[dict[str, str]], params: DecodingParams) -> AsyncIterator[str]:
        """Pieces of one reply; stops generating when the consumer goes away (also while it
        still waits for the model), and always gives the model back, whatever raises."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def work() -> None:
            locked = False
            try:
                if self.exclusive:
                    while not self.lock.acquire(timeout=0.1):
                        if stop.is_set():  # the client left while queued: nothing to generate
                            return
                    locked = True
                pieces = self.backend.stream(messages, params)  # may raise at once (a template error)
                try:
                    for piece in pieces:
                        if stop.is_set():
                            break
                        loop.call_soon_threadsafe(queue.put_nowait, piece)
                finally:
                    getattr(pieces, "close", lambda: None)()  # ends an HTTP stream / generation early
            except Exception as e:  # noqa: BLE001 - shown to the user in the page
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                if locked:
                    self.lock.release()
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        thread = threading.Thread(target=work, name=f"engine-{self.name}", daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()


def _number(settings: dict[str, Any], key: str, default: float, kind: type = float) -> Any:
    v = settings.get(key, default)
    if v is None or v == "":
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float, str)) or (isinstance(v, str) and len(v) > 32):
        raise ConfigError(f"must be a number, got {str(v)[:40]!r}", field=f"settings.{key}")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"must be a number, got {str(v)[:40]!r}", field=f"settings.{key}") from None
    if not math.isfinite(f):
        raise ConfigError(f"must be a finite number, got {str(v)[:40]!r}", field=f"settings.{key}")
    if kind is int:
        if f != int(f):
            raise ConfigError(f"must be a whole number, got {v!r}", field=f"settings.{key}")
        return int(f)
    return f


def params_from(settings: Any) -> DecodingParams:
    """Decoding settings from the page (temperature 0 = greedy); ConfigError names the bad field."""
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ConfigError(f"must be an object of decoding settings, got {type(settings).__name__}",
                          field="settings")
    temperature = _number(settings, "temperature", 0.0)
    max_new = _number(settings, "max_tokens", 256, int)
    if not 1 <= max_new <= MAX_NEW_TOKENS_LIMIT:
        raise ConfigError(f"must be between 1 and {MAX_NEW_TOKENS_LIMIT}, got {max_new}", field="settings.max_tokens")
    params = DecodingParams(max_new_tokens=max_new, do_sample=temperature > 0, temperature=temperature or 1.0,
                            top_p=_number(settings, "top_p", 1.0),
                            repetition_penalty=_number(settings, "repetition_penalty", 1.0))
    try:
        validate_decoding(params)
    except ConfigError as e:
        field_ = (e.field or "").removeprefix("decoding").lstrip(".")
        raise ConfigError(e.reason, field=f"settings.{field_}" if field_ else "settings") from None
    return params


def _endpoint_model(url: str) -> str:
    """The first model an OpenAI-compatible endpoint lists (``GET {url}/models``)."""
    try:
        resp = httpx.get(url.rstrip("/") + "/models", timeout=10)
        resp.raise_for_status()
        return str(resp.json()["data"][0]["id"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as e:
        raise ConfigError(f"cannot list the models of {url} ({e}); name one as URL#MODEL", field="--model") from None


def load_engine(spec: str, **backend_kw: Any) -> Engine:
    """``NAME=SPEC``: SPEC is a run dir / model folder, or ``http(s)://host/v1[#model]``."""
    from polyinstruct.infer import load_backend

    name, sep, target = spec.partition("=")
    if not sep or not name or not target:
        raise ConfigError(f"expected NAME=RUN_DIR or NAME=URL[#MODEL], got {spec!r}", field="--model")
    if target.startswith(("http://", "https://")):
        url, _, model = target.partition("#")
        backend = load_backend({"backend": "openai_http", "model": model or _endpoint_model(url), "base_url": url})
        return Engine(name, backend, exclusive=False)
    return Engine(name, load_backend({"backend": "hf", "model": target, "batch_size": 1, **backend_kw}))
