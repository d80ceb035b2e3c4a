"""The models the browser chat and arena talk to.

An engine is a named ``GenerationBackend`` (docs/inference.md): a run directory or
model folder loaded in process (``hf``), or any OpenAI-compatible endpoint
(``openai_http``, e.g. ``polyinstruct serve``). Only engines named on the command
line can be reached from the page, so the page cannot make the server fetch
arbitrary URLs. Streaming runs the backend's ``stream`` in a thread and hands the
pieces to the event loop; a local model generates one reply at a time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from polyinstruct.errors import ConfigError
from polyinstruct.infer.backend import DecodingParams, GenerationBackend
from polyinstruct.infer.decoding import validate_decoding

MAX_NEW_TOKENS_LIMIT = 2048
_END = object()


@dataclass
class Engine:
    name: str
    backend: GenerationBackend
    exclusive: bool = True  # a local model: one generation at a time
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def stream(self, messages: list[dict[str, str]], params: DecodingParams) -> AsyncIterator[str]:
        """Pieces of one reply; stops generating when the consumer goes away."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                if self.exclusive:
                    self.lock.acquire()
                pieces = self.backend.stream(messages, params)
                try:
                    for piece in pieces:
                        if stop.is_set():
                            break
                        loop.call_soon_threadsafe(queue.put_nowait, piece)
                finally:
                    getattr(pieces, "close", lambda: None)()  # ends an HTTP stream / generation early
                    if self.exclusive:
                        self.lock.release()
            except Exception as e:  # noqa: BLE001 - shown to the user in the page
                loop.call_soon_threadsafe(queue.put_nowait, e)
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


def params_from(settings: dict[str, Any]) -> DecodingParams:
    """Decoding settings from the page (temperature 0 = greedy); ConfigError names the bad field."""
    def num(key: str, default: float, kind=float) -> Any:
        v = settings.get(key, default)
        if v in (None, ""):
            return default
        try:
            return kind(v)
        except (TypeError, ValueError):
            raise ConfigError(f"must be a number, got {v!r}", field=key) from None

    temperature = num("temperature", 0.0)
    max_new = num("max_tokens", 256, int)
    if not 1 <= max_new <= MAX_NEW_TOKENS_LIMIT:
        raise ConfigError(f"must be between 1 and {MAX_NEW_TOKENS_LIMIT}, got {max_new}", field="max_tokens")
    params = DecodingParams(max_new_tokens=max_new, do_sample=temperature > 0, temperature=temperature or 1.0,
                            top_p=num("top_p", 1.0), repetition_penalty=num("repetition_penalty", 1.0))
    validate_decoding(params)
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
