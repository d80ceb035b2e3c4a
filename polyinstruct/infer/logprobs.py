"""Token log-probabilities for the server: echo, logprobs and token-id prompts (docs/inference.md).

What evaluators (lm-eval's ``local-completions``) need from ``/v1/completions``, as vLLM and
the OpenAI API define it: a prompt given as text or as token ids, continued by up to
``max_tokens`` tokens (0 with ``echo``: score the prompt only), and for every token its
log-probability under the model (the raw distribution, before temperature or top-p) and the
``logprobs`` most likely alternatives. Only backends that own a transformers model (``hf``)
can do this; the server answers 400 for others.

``ScoreJob`` payloads go through the server's batch worker like any generation (same queue,
same admitted-token limits, cancelled when the client leaves): ``LogprobBackend`` wraps the
backend so the worker's ``generate`` call for jobs of kind ``"logprobs"`` lands in
``run_jobs`` here, under the backend's lock.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from polyinstruct.infer.backend import DecodingParams, Generation
from polyinstruct.infer.decoding import trim_at_stop

MAX_LOGPROBS = 20  # vLLM's default max_logprobs


@dataclass
class ScoreJob:
    ids: list[int]                 # prompt token ids
    max_tokens: int                # new tokens to generate (0: prompt only)
    echo: bool                     # return the prompt's tokens (and their logprobs) too
    top: int | None                # alternatives per position (None: no logprobs wanted)
    prompt_text: str | None = None  # the prompt as the client sent it (text prompts)
    skip_special: bool = True      # decode the completion without special tokens (as generate_text does)


@dataclass
class ScoredGeneration(Generation):
    token_ids: list[int] = field(default_factory=list)        # echoed prompt ids (if echo) + completion ids
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    top_ids: list[list[tuple[int, float]] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)
    echo_text: str = ""


def supports_logprobs(backend: Any) -> bool:
    return all(hasattr(backend, a) for a in ("model", "tokenizer", "_lock", "_gen_kwargs", "_stops"))


def _generate_new(backend: Any, ids: list[int], params: DecodingParams, max_tokens: int,
                  should_stop: Callable[[], bool] | None) -> tuple[list[int], str, str]:
    """Generate from exact token ids: (new ids up to eos/stop, their text, finish reason)."""
    import torch

    stops = backend._stops(params)
    p = DecodingParams(**{**params.to_dict(), "max_new_tokens": max_tokens})
    kwargs = backend._gen_kwargs(p, stops)
    if should_stop is not None:
        from polyinstruct.infer.hf import stopping_criteria

        kwargs["stopping_criteria"] = stopping_criteria(should_stop)
    dev = backend.model.device
    inp = torch.tensor([ids], dtype=torch.long, device=dev)
    out = backend.model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), **kwargs)
    new = out[0, len(ids):].tolist()
    eos = set(backend.eos_ids)
    n = next((i for i, t in enumerate(new) if t in eos), len(new))
    ended = n < len(new)
    new = new[:n]
    text = backend.tokenizer.decode(new, skip_special_tokens=True)
    trimmed, hit = trim_at_stop(text, stops)
    if hit:  # keep the fewest tokens whose text covers what is left before the stop string
        for j in range(len(new) + 1):
            if len(backend.tokenizer.decode(new[:j], skip_special_tokens=True)) >= len(trimmed):
                new = new[:j]
                break
    finish = "stop" if ended or hit or len(new) < max_tokens else "length"
    return new, trimmed, finish


def _score(backend: Any, seq: list[int], top: int) -> tuple[list[float | None], list[list[tuple[int, float]] | None]]:
    """Log-probability of each token of ``seq`` given the ones before it (None for the first)."""
    import torch

    inp = torch.tensor([seq], dtype=torch.long, device=backend.model.device)
    logits = backend.model(input_ids=inp, attention_mask=torch.ones_like(inp)).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    tgt = torch.tensor(seq[1:], dtype=torch.long, device=lp.device)
    chosen = lp[:-1].gather(1, tgt[:, None])[:, 0].tolist()
    tops: list[list[tuple[int, float]] | None] = [None]
    if top > 0:
        vals, idx = lp[:-1].topk(min(top, lp.shape[-1]), dim=-1)
        for v_row, i_row in zip(vals.tolist(), idx.tolist()):
            tops.append(list(zip(i_row, v_row)))
    else:
        tops += [[] for _ in chosen]
    return [None, *chosen], tops


def run_jobs(backend: Any, jobs: list[ScoreJob], params: DecodingParams,
             should_stop: Callable[[], bool] | None = None) -> list[ScoredGeneration]:
    import torch

    tok = backend.tokenizer
    out: list[ScoredGeneration] = []
    with backend._lock, torch.inference_mode():
        if params.seed is not None:
            torch.manual_seed(params.seed)
        for job in jobs:
            if should_stop is not None and should_stop():
                out.append(ScoredGeneration(text="", prompt_tokens=len(job.ids), completion_tokens=0))
                continue
            new, text, finish = ([], "", "length")
            if job.max_tokens > 0:
                new, text, finish = _generate_new(backend, job.ids, params, job.max_tokens, should_stop)
            seq = [*job.ids, *new]
            want = job.top is not None
            lps, tops = _score(backend, seq, job.top or 0) if want and len(seq) > 0 else ([], [])
            start = 0 if job.echo else len(job.ids)
            ids = seq[start:]
            pieces = [tok.decode([t]) for t in ids]
            echo_text = ""
            if job.echo:
                echo_text = job.prompt_text if job.prompt_text is not None else tok.decode(job.ids)
            offsets, pos = [], 0
            for k, piece in enumerate(pieces):
                offsets.append(pos)
                pos += len(piece)
                if job.echo and k == len(job.ids) - 1:
                    pos = len(echo_text)  # completion offsets continue after the echoed prompt text
            g = ScoredGeneration(text=echo_text + text, prompt_tokens=len(job.ids), completion_tokens=len(new),
                                 finish_reason=finish, token_ids=ids, tokens=pieces, echo_text=echo_text)
            if want:
                g.token_logprobs = lps[start:]
                g.top_ids = tops[start:]
                g.top_logprobs = [None if t is None else _top_dict(tok, t, job.top or 0, (i, lp))
                                  for t, i, lp in zip(g.top_ids, ids, g.token_logprobs)]
                g.text_offset = offsets
            out.append(g)
    return out


def _top_dict(tok: Any, pairs: list[tuple[int, float]], n: int, chosen: tuple[int, float | None]) -> dict[str, float]:
    """The ``n`` most likely tokens and, as vLLM does, the chosen one (up to n + 1 entries)."""
    d: dict[str, float] = {}
    for i, v in pairs[:n]:
        d.setdefault(tok.decode([i]), v)
    if chosen[1] is not None:
        d.setdefault(tok.decode([chosen[0]]), chosen[1])
    return d


class LogprobBackend:
    """The server's backend as the worker sees it: jobs of kind "logprobs" are scored here."""

    def __init__(self, backend: Any):
        self._inner = backend
        self._inner_stop = "should_stop" in _params(getattr(backend, "generate", None))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def generate(self, conversations: list[Any], params: DecodingParams, *,
                 should_stop: Callable[[], bool] | None = None) -> list[Generation]:
        if conversations and isinstance(conversations[0], ScoreJob):
            return run_jobs(self._inner, conversations, params, should_stop)  # type: ignore[arg-type]
        if self._inner_stop:
            return self._inner.generate(conversations, params, should_stop=should_stop)
        return self._inner.generate(conversations, params)


def _params(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()
