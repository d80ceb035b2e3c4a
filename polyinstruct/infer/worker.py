"""One thread owns the model; requests queue up and waiting ones are batched together.

Why: transformers models are not safe to drive from many threads at once, and a
server that runs one request per forward pass wastes most of the hardware. The
worker takes the oldest request, adds every waiting request with the same kind and
decoding settings (up to ``max_batch_size``), and runs them as one ``generate``
call. Streaming requests run alone. Results go back through futures (blocking
callers) or an asyncio queue (the HTTP server), so no thread pool is tied up waiting.

Work is bounded: besides the number of waiting requests (``max_queue``), the tokens
admitted but not yet finished (prompt + ``max_tokens`` of every queued and running
job) may not exceed ``max_queued_tokens``. ``submit_many`` admits a multi-prompt
request all at once or not at all, so a refused request never leaves work behind.
A cancelled job (the client left) is dropped if it has not started, and a running
batch whose jobs are all cancelled is stopped at the next token when the backend's
``generate`` takes ``should_stop`` (the HF backend does).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from polyinstruct.errors import PolyinstructError
from polyinstruct.infer.backend import DecodingParams, Generation, GenerationBackend

log = logging.getLogger(__name__)

_END = object()  # sentinel pushed to a stream queue when generation is over


class QueueFullError(PolyinstructError):
    """More requests are waiting than the server accepts; the client should retry later."""


@dataclass
class Job:
    kind: str  # "chat" (payload: messages) | "text" (payload: raw prompt)
    payload: Any
    params: DecodingParams
    future: Future = field(default_factory=Future)
    stream_queue: asyncio.Queue | None = None
    loop: asyncio.AbstractEventLoop | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] = field(default_factory=dict)
    cost: int = 0  # tokens of work this job may take (prompt + max_new_tokens)

    def cancel(self) -> None:
        """The client is gone or the request failed: never start it, stop it if running."""
        self.cancelled.set()
        self.future.cancel()

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, json.dumps(self.params.to_dict(), sort_keys=True)


class BatchWorker:
    """Serialises access to ``backend`` and batches compatible waiting requests."""

    def __init__(self, backend: GenerationBackend, *, max_batch_size: int = 16, max_queue: int = 256,
                 max_queued_tokens: int | None = None):
        self.backend, self.max_batch_size, self.max_queue = backend, max(1, max_batch_size), max_queue
        self.max_queued_tokens = max_queued_tokens
        self.pending_tokens = 0  # admitted and not yet finished (queued + running)
        self.cancelled_batches = 0  # running batches stopped because every job in them was cancelled
        self._accepts_stop = {name: _takes_should_stop(getattr(backend, name, None))
                              for name in ("generate", "generate_text")}
        self._jobs: deque[Job] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batches_run = 0  # how many generate calls; tests and /health read it

    @property
    def queued(self) -> int:
        return len(self._jobs)

    def start(self) -> None:
        with self._cv:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="polyinstruct-generate", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _put(self, jobs: list[Job]) -> list[Job]:
        self.start()
        cost = sum(j.cost for j in jobs)
        with self._cv:
            if len(self._jobs) + len(jobs) > self.max_queue:
                raise QueueFullError(f"{len(self._jobs)} requests already waiting (limit {self.max_queue})")
            if self.max_queued_tokens is not None and self.pending_tokens and \
                    self.pending_tokens + cost > self.max_queued_tokens:
                raise QueueFullError(f"{self.pending_tokens} tokens of work already admitted; this request adds "
                                     f"{cost} (limit {self.max_queued_tokens})")
            self.pending_tokens += cost
            for job in jobs:
                job.future.add_done_callback(lambda _f, c=job.cost: self._release(c))
                self._jobs.append(job)
            self._cv.notify()
        return jobs

    def _release(self, cost: int) -> None:
        with self._cv:
            self.pending_tokens -= cost

    def submit(self, kind: str, payload: Any, params: DecodingParams, cost: int = 0) -> Future:
        """Queue one request; the future resolves to a ``Generation``."""
        return self._put([Job(kind, payload, params, cost=cost)])[0].future

    def submit_many(self, kind: str, payloads: list[Any], params: DecodingParams, costs: list[int]) -> list[Job]:
        """Queue several prompts of one request, all or none (``QueueFullError``)."""
        return self._put([Job(kind, p, params, cost=c) for p, c in zip(payloads, costs)])

    def submit_stream(self, kind: str, payload: Any, params: DecodingParams,
                      loop: asyncio.AbstractEventLoop, cost: int = 0) -> Job:
        """Queue a streaming request; text pieces arrive on ``job.stream_queue`` until the end sentinel."""
        return self._put([Job(kind, payload, params, stream_queue=asyncio.Queue(), loop=loop, cost=cost)])[0]

    # -- worker thread ----------------------------------------------------------------
    def _take(self) -> list[Job] | None:
        with self._cv:
            while not self._jobs and not self._stopping:
                self._cv.wait()
            if not self._jobs:
                return None
            first = self._jobs.popleft()
            if first.stream_queue is not None:
                return [first]
            batch, rest = [first], deque()
            while self._jobs and len(batch) < self.max_batch_size:
                job = self._jobs.popleft()
                (batch if job.stream_queue is None and job.key == first.key else rest).append(job)
            self._jobs.extendleft(reversed(rest))
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch[0].stream_queue is not None:
                self._run_stream(batch[0])
                continue
            for j in batch:
                if j.cancelled.is_set():
                    j.future.cancel()
            batch = [j for j in batch if j.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                gens = self._generate(batch[0].kind, [j.payload for j in batch], batch[0].params,
                                      lambda batch=batch: all(j.cancelled.is_set() for j in batch))
                self.batches_run += 1
                if all(j.cancelled.is_set() for j in batch):
                    self.cancelled_batches += 1
                for job, gen in zip(batch, gens):
                    job.future.set_result(gen)
            except Exception as e:
                log.exception("generation failed for a batch of %d", len(batch))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)

    def _generate(self, kind: str, payloads: list[Any], params: DecodingParams,
                  should_stop: Any = None) -> list[Generation]:
        name = "generate_text" if kind == "text" else "generate"
        fn = getattr(self.backend, name)
        if self._accepts_stop.get(name):
            return fn(payloads, params, should_stop=should_stop)
        return fn(payloads, params)

    def _run_stream(self, job: Job) -> None:
        def emit(item: Any) -> None:
            job.loop.call_soon_threadsafe(job.stream_queue.put_nowait, item)  # type: ignore[union-attr]

        if job.cancelled.is_set():
            job.future.cancel()
        if not job.future.set_running_or_notify_cancel():
            emit(_END)
            return
        fn = self.backend.stream_text if job.kind == "text" else self.backend.stream  # type: ignore[attr-defined]
        try:
            try:
                pieces = fn(job.payload, job.params, result=job.result)
            except TypeError:  # a backend whose stream() takes no result=
                pieces = fn(job.payload, job.params)
            try:
                for piece in pieces:
                    if job.cancelled.is_set():
                        break
                    emit(piece)
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()
            self.batches_run += 1
        except Exception as e:
            log.exception("streaming generation failed")
            emit(e)
        finally:
            if not job.future.done():
                job.future.set_result(job.result.get("generation"))  # releases the job's admitted tokens
        emit(_END)


def _takes_should_stop(fn: Any) -> bool:
    if fn is None:
        return False
    try:
        return "should_stop" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def is_end(item: Any) -> bool:
    return item is _END
