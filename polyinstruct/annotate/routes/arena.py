"""The arena: two anonymous models answer one prompt, then one blind vote.

Fairness (docs/annotation.md, "What the arena protects"):

- **Fixed settings per round.** The settings are read once, when the round starts, and
  stored with it (``arena_rounds``); both sides use them, whatever a side request sends.
- **Sampling with a per-round seed.** A round always samples (temperature 0 becomes
  ``ARENA_TEMPERATURE``) with a random seed stored with the round and the same for both
  sides, so the greedy answer of a model in the chat does not match its arena answer.
- **One answer per side.** The first request for a side starts its generation, which runs
  to the end on the server even if the client goes away, and is stored; every later
  request for that side (a reload, a reconnect) follows the same generation or gets the
  stored answer: a side is never re-rolled.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from polyinstruct.annotate.engines import Engine, params_from
from polyinstruct.annotate.store import PREFERENCES, StoreError
from polyinstruct.annotate.web import TooMany, WebContext, parse_id, parse_small_int
from polyinstruct.errors import ConfigError
from polyinstruct.infer.backend import DecodingParams

ARENA_TEMPERATURE = 0.7  # a round asked greedy samples at this temperature instead


def round_settings(raw: object) -> dict:
    """The settings stored with a new round: the page's, sampling forced, and a fresh seed."""
    p = params_from(raw)
    return {"max_tokens": p.max_new_tokens, "temperature": p.temperature if p.do_sample else ARENA_TEMPERATURE,
            "top_p": p.top_p, "repetition_penalty": p.repetition_penalty, "seed": secrets.randbelow(2**31)}


def round_params(settings: dict) -> DecodingParams:
    return DecodingParams(max_new_tokens=int(settings.get("max_tokens", 256)), do_sample=True,
                          temperature=float(settings.get("temperature", ARENA_TEMPERATURE)),
                          top_p=float(settings.get("top_p", 1.0)),
                          repetition_penalty=float(settings.get("repetition_penalty", 1.0)),
                          seed=settings.get("seed"))


class _Run:
    """One side's generation, followed by any number of requests."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.done = False
        self.error: Exception | None = None
        self.cond = asyncio.Condition()

    async def add(self, piece: str) -> None:
        async with self.cond:
            self.pieces.append(piece)
            self.cond.notify_all()

    async def finish(self, error: Exception | None = None) -> None:
        async with self.cond:
            self.done, self.error = True, error
            self.cond.notify_all()

    async def follow(self) -> AsyncIterator[str]:
        i = 0
        while True:
            async with self.cond:
                await self.cond.wait_for(lambda: self.done or len(self.pieces) > i)
                new, done, error = self.pieces[i:], self.done, self.error
            i += len(new)
            if new:
                yield "".join(new)
            if done and i >= len(self.pieces):
                if error is not None:
                    raise error
                return


def router(ctx: WebContext) -> APIRouter:
    r = APIRouter()
    runs: dict[tuple[int, str], _Run] = {}
    tasks: set[asyncio.Task] = set()
    r.arena_runs = runs  # type: ignore[attr-defined]

    async def produce(key: tuple[int, str], run: _Run, engine: Engine, messages, params) -> None:
        try:
            async for piece in engine.stream(messages, params):
                await run.add(piece)
            await run_in_threadpool(ctx.store.set_output, key[0], key[1], "".join(run.pieces))
            await run.finish()
        except Exception as e:  # noqa: BLE001 - shown to the page; nothing stored, so the side can be asked again
            await run.finish(e)
        finally:
            runs.pop(key, None)

    async def stored(text: str) -> AsyncIterator[str]:
        yield text

    @r.get("/arena", response_class=HTMLResponse)
    def arena_page(request: Request):
        ctx.user(request)
        return ctx.html("arena.html", request, title="Arena")

    @r.post("/api/arena")
    async def api_arena(request: Request):
        name = ctx.user(request)
        try:
            body = await ctx.json_body(request)
            if len(ctx.engines) < 2:
                raise ConfigError("the arena needs at least two models (--model NAME=... twice)")
            messages = ctx.clean_messages(body)
            settings = round_settings(body.get("settings"))
            cap = ctx.limits.arena_rounds_per_hour
            if await run_in_threadpool(ctx.store.arena_rounds_since, name, time.time() - 3600) >= cap:
                raise TooMany(f"at most {cap} arena rounds an hour per annotator; try again later", 600)
            x, y = secrets.SystemRandom().sample(sorted(ctx.engines), 2)
            params = round_params(settings)
            for engine in (ctx.engines[x], ctx.engines[y]):
                await run_in_threadpool(engine.check_prompt, messages, params)
        except ConfigError as e:
            return ctx.bad_request(e)
        except TooMany as e:
            resp = ctx.bad_request(e, 429)
            resp.headers["Retry-After"] = str(e.retry_after)
            return resp
        item = await run_in_threadpool(lambda: ctx.store.new_arena_item(name, messages, x, y, settings=settings))
        return {"round": item.id}

    @r.post("/api/arena/{round_id}/{side}")
    async def api_arena_side(request: Request, round_id: str, side: str):
        name = ctx.user(request)
        try:
            rid = parse_id(round_id, "round")
            body = await ctx.json_body(request)
            if side == "vote":
                vote = {"accept_a": parse_small_int(body.get("accept_a"), "accept_a", {0, 1}),
                        "accept_b": parse_small_int(body.get("accept_b"), "accept_b", {0, 1}),
                        "preference": parse_small_int(body.get("preference"), "preference", PREFERENCES)}
                comment = body.get("comment")
                if comment is not None and not isinstance(comment, str):
                    raise ConfigError("must be a string", field="comment")
                stored_ = await run_in_threadpool(lambda: ctx.store.submit(name, rid, comment=comment, **vote))
                return {"stored": stored_}
            if side not in ("a", "b"):
                raise ConfigError("must be a, b or vote", field="side")
            # No await between this read and the registry below: a side is either being generated,
            # stored, or not started, never started twice.
            info = ctx.store.arena_side(rid, side, name)
        except (ConfigError, StoreError) as e:
            return ctx.bad_request(e)
        key = (rid, side)
        run = runs.get(key)
        if run is not None:
            return ctx.ndjson(run.follow())
        if info.output is not None:
            return ctx.ndjson(stored(info.output))
        engine = ctx.engines.get(info.model)
        if engine is None:
            return ctx.bad_request(ConfigError(f"the model of side {side} is not served by this app any more",
                                               field="side"))
        run = runs[key] = _Run()
        task = asyncio.get_running_loop().create_task(
            produce(key, run, engine, info.messages, round_params(info.settings)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return ctx.ndjson(run.follow())

    return r
