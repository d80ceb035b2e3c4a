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
    shown_from: int = 0            # ids before this the server added (BOS): they condition, never echo


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


# Logits of one scoring forward pass hold at most this many floats (rows x positions x vocabulary):
# a larger batch is split, so a 262k-vocabulary model scores in bounded memory.
MAX_LOGIT_ELEMENTS = 1 << 28
POSITION_CHUNK = 256  # positions normalised at once (one logsumexp over the vocabulary each)


def _greedy_one(params: DecodingParams) -> bool:
    """Greedy decoding with no logits processors: the next token is the scoring pass's argmax."""
    return (not params.do_sample and (params.repetition_penalty or 1.0) == 1.0
            and not params.no_repeat_ngram_size)


Scores = tuple[list[float | None], list[list[tuple[int, float]] | None], int | None]


def _row_scores(logits: Any, seq: list[int], first: int, top: int, want_next: bool) -> Scores:
    """From one row of logits: the log-probability of each token of ``seq`` from ``first`` on
    (given the tokens before it; None before ``first`` and for position 0), its ``top``
    alternatives, and with ``want_next`` the greedy next token appended (its id third).

    Only the positions asked for are normalised, a chunk at a time: no float32 log-softmax over
    the vocabulary of every position exists at once."""
    import torch

    lps: list[float | None] = [None] * max(1, first)
    tops: list[list[tuple[int, float]] | None] = [None] * max(1, first)
    tgt = torch.tensor(seq, dtype=torch.long, device=logits.device)
    for s in range(max(1, first), len(seq), POSITION_CHUNK):
        e = min(len(seq), s + POSITION_CHUNK)
        x = logits[s - 1:e - 1].float()  # position p - 1 predicts token p
        lse = torch.logsumexp(x, dim=-1)
        lps += (x.gather(1, tgt[s:e, None])[:, 0] - lse).tolist()
        if top > 0:
            vals, idx = x.topk(min(top, x.shape[-1]), dim=-1)
            tops += [list(zip(i, v)) for i, v in zip(idx.tolist(), (vals - lse[:, None]).tolist())]
        else:
            tops += [[] for _ in range(e - s)]
    nxt = None
    if want_next:
        last = logits[len(seq) - 1].float()
        lse = torch.logsumexp(last, dim=-1)
        vals, idx = last.topk(max(1, min(top, last.shape[-1])))
        nxt = int(idx[0])
        lps.append(float(vals[0] - lse))
        tops.append(list(zip(idx.tolist(), (vals - lse).tolist()))[:top] if top > 0 else [])
    return lps, tops, nxt


def _forward_rows(backend: Any, seqs: list[list[int]], take: Callable[[int, Any], None]) -> None:
    """Right-padded forward passes over ``seqs`` (longest first, split so one pass's logits stay
    under ``MAX_LOGIT_ELEMENTS``); ``take(i, logits of seqs[i])`` is called for each sequence."""
    import torch

    head = backend.model.get_output_embeddings()
    vocab = head.weight.shape[0] if head is not None else len(backend.tokenizer)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    dev = backend.model.device
    k = 0
    while k < len(order):
        width = len(seqs[order[k]])
        rows = max(1, min(len(order) - k, MAX_LOGIT_ELEMENTS // max(1, width * vocab)))
        group = order[k:k + rows]
        k += rows
        ids = torch.full((len(group), width), backend.pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for r, i in enumerate(group):
            ids[r, :len(seqs[i])] = torch.tensor(seqs[i], dtype=torch.long)
            mask[r, :len(seqs[i])] = 1
        logits = backend.model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
        for r, i in enumerate(group):
            take(i, logits[r, :len(seqs[i])])
        del logits


def run_jobs(backend: Any, jobs: list[ScoreJob], params: DecodingParams,
             should_stop: Callable[[], bool] | None = None) -> list[ScoredGeneration]:
    """Continue and score every job; the scoring forward passes run batched.

    A job asking for one greedy token (lm-eval's likelihood requests: ``echo``, ``max_tokens=1``)
    takes it from its scoring pass; longer or sampled continuations are generated first."""
    import torch

    stopped = lambda: should_stop is not None and should_stop()  # noqa: E731
    results: list[tuple[list[int], str, str] | None] = [None] * len(jobs)
    scored: dict[int, Scores] = {}
    with backend._lock, torch.inference_mode():
        if params.seed is not None:
            torch.manual_seed(params.seed)
        one_pass = [j.max_tokens == 1 and _greedy_one(params) for j in jobs]
        for i, job in enumerate(jobs):
            if job.max_tokens > 0 and not one_pass[i] and not stopped():
                results[i] = _generate_new(backend, job.ids, params, job.max_tokens, should_stop)
        todo = [i for i, j in enumerate(jobs)
                if one_pass[i] or (j.top is not None and (j.max_tokens == 0 or results[i] is not None))]
        if todo and not stopped():
            seqs = [[*jobs[i].ids, *(results[i][0] if results[i] else [])] for i in todo]

            def take(r: int, logits: Any) -> None:
                job = jobs[todo[r]]
                first = (job.shown_from if job.echo else len(job.ids)) if job.top is not None else len(seqs[r])
                scored[todo[r]] = _row_scores(logits, seqs[r], first, job.top or 0, one_pass[todo[r]])

            _forward_rows(backend, seqs, take)
        for i in scored:
            if one_pass[i]:
                results[i] = _one_token(backend, scored[i][2], params)
    return [_assemble(backend, job, results[i], scored.get(i)) for i, job in enumerate(jobs)]


def _pieces(tok: Any, ids: list[int]) -> list[str]:
    """Each id's text (``tok.decode([id])``), memoised per tokenizer: a reply decodes every echoed
    position and its alternatives, and the same ids come back request after request."""
    cache = tok.__dict__.setdefault("_polyinstruct_pieces", {})
    missing = sorted({i for i in ids if i not in cache})
    if missing:
        for i, text in zip(missing, tok.batch_decode([[i] for i in missing])):
            cache[i] = text
    return [cache[i] for i in ids]


def _one_token(backend: Any, nxt: int | None, params: DecodingParams) -> tuple[list[int], str, str]:
    """The greedy next token as ``_generate_new`` returns it (eos and stop strings end it)."""
    if nxt is None or nxt in set(backend.eos_ids):
        return [], "", "stop"
    text = backend.tokenizer.decode([nxt], skip_special_tokens=True)
    trimmed, hit = trim_at_stop(text, backend._stops(params))
    if hit:
        return ([nxt] if trimmed else []), trimmed, "stop"
    return [nxt], text, "length"


def _assemble(backend: Any, job: ScoreJob, result: tuple[list[int], str, str] | None,
              scored: Scores | None) -> ScoredGeneration:
    tok = backend.tokenizer
    if result is None and job.max_tokens > 0:  # never ran: the client has gone
        return ScoredGeneration(text="", prompt_tokens=len(job.ids), completion_tokens=0)
    new, text, finish = result if result is not None else ([], "", "length")
    seq = [*job.ids, *new]
    start = job.shown_from if job.echo else len(job.ids)
    ids = seq[start:]
    pieces = _pieces(tok, ids)
    echo_text = ""
    if job.echo:
        echo_text = job.prompt_text if job.prompt_text is not None else tok.decode(job.ids[job.shown_from:])
    offsets, pos = [], 0
    for k, piece in enumerate(pieces):
        offsets.append(pos)
        pos += len(piece)
        if job.echo and k == len(job.ids) - job.shown_from - 1:
            pos = len(echo_text)  # completion offsets continue after the echoed prompt text
    g = ScoredGeneration(text=echo_text + text, prompt_tokens=len(job.ids), completion_tokens=len(new),
                         finish_reason=finish, token_ids=ids, tokens=pieces, echo_text=echo_text)
    if job.top is not None and scored is not None:
        g.token_logprobs = scored[0][start:len(seq)]
        g.top_ids = scored[1][start:len(seq)]
        g.top_logprobs = [None if t is None else _top_dict(tok, t, job.top or 0, (i, lp))
                          for t, i, lp in zip(g.top_ids, ids, g.token_logprobs)]
        g.text_offset = offsets
    return g


def _top_dict(tok: Any, pairs: list[tuple[int, float]], n: int, chosen: tuple[int, float | None]) -> dict[str, float]:
    """The ``n`` most likely tokens and, as vLLM does, the chosen one (up to n + 1 entries)."""
    d: dict[str, float] = {}
    texts = _pieces(tok, [i for i, _ in pairs[:n]] + [chosen[0]])
    for text, (_i, v) in zip(texts, pairs[:n]):
        d.setdefault(text, v)
    if chosen[1] is not None:
        d.setdefault(texts[-1], chosen[1])
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
