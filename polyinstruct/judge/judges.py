"""Single-answer grading and pairwise comparison, built on any GenerationBackend.

Both follow MT-Bench's protocol: one question per call, no model identity, no
history. Prediction rows in (``id``, ``messages``, ``response``, ``language``,
``model``); one judgment row out per input row, in input order.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from polyinstruct.infer.backend import DecodingParams
from polyinstruct.judge.ask import Request, ask_all
from polyinstruct.judge.cache import JudgmentCache, judgment_key
from polyinstruct.judge.parse import parse_preference, parse_score
from polyinstruct.judge.prompts import JudgeTemplate, question_text

OnDone = Callable[[int], None]


class _JudgeBase:
    def __init__(self, backend: Any, template: JudgeTemplate, cache: JudgmentCache, *, judge_name: str,
                 params: DecodingParams | None = None, prompt_language: str = "en",
                 max_parse_retries: int = 2, retry_unparsed: bool = False):
        self.backend, self.template, self.cache = backend, template, cache
        self.judge_name = judge_name
        self.params = params or DecodingParams(max_new_tokens=1024)
        self.prompt_language = prompt_language
        self.max_parse_retries, self.retry_unparsed = max_parse_retries, retry_unparsed

    def _request(self, variant: str, parse: Callable[[str], Any], **values: str) -> Request:
        msgs = self.template.render(variant, **values)
        key = judgment_key(self.judge_name, self.template.name, self.template.version, variant, msgs)
        return Request(key=key, messages=msgs, parse=parse)

    def _ask(self, requests: list[Request], on_done: OnDone | None) -> dict[str, dict[str, Any]]:
        return ask_all(self.backend, requests, self.params, self.cache, max_parse_retries=self.max_parse_retries,
                       retry_unparsed=self.retry_unparsed, on_done=on_done)

    def _base_row(self, item: dict[str, Any], variant: str) -> dict[str, Any]:
        return {"id": item["id"], "model": item.get("model"), "language": item.get("language"),
                "judge": self.judge_name, "template": self.template.name,
                "template_version": self.template.version, "prompt_variant": variant}


class SingleJudge(_JudgeBase):
    """Scores each answer on the template's scale (seed 1: 1-3; MT-Bench: 1-10)."""

    def score(self, items: list[dict[str, Any]], on_done: OnDone | None = None) -> list[dict[str, Any]]:
        assert self.template.kind == "single" and self.template.scale
        scale = self.template.scale
        parse = lambda text: parse_score(text, scale, integer=self.template.integer)  # noqa: E731
        reqs = []
        for it in items:
            variant = self.template.variant_for(it.get("language"), self.prompt_language)
            reqs.append((variant, self._request(variant, parse, question=question_text(it["messages"]),
                                                answer=it["response"])))
        answers = self._ask([r for _, r in reqs], on_done)
        rows = []
        for it, (variant, req) in zip(items, reqs):
            rec = answers[req.key]
            value = rec["value"]
            if value is not None and parse(rec["raw"] or "") is None:
                value = None  # cached under an older, looser rule (e.g. [[2.5]] on the 1-3 scale)
            row = self._base_row(it, variant)
            row.update(scale=list(scale), score=value, parsed=value is not None, raw=rec["raw"],
                       attempts=rec["attempts"], cached=rec["cached"], error=rec["error"], cache_key=req.key)
            rows.append(row)
        return rows


class PairwiseJudge(_JudgeBase):
    """Candidate vs baseline (e.g. a reference output), AlpacaEval style.

    Which answer is shown as A is drawn from a RNG seeded by (seed, id, model), so
    it is reproducible and independent of item order or concurrency. With
    ``both_orders`` each pair is asked twice (A/B swapped); disagreeing verdicts
    count as a tie and are flagged ``inconsistent``.
    """

    def __init__(self, *args, seed: int = 0, both_orders: bool = False, **kw):
        super().__init__(*args, **kw)
        self.seed, self.both_orders = seed, both_orders

    def candidate_first(self, item: dict[str, Any]) -> bool:
        return random.Random(f"{self.seed}:{item['id']}:{item.get('model')}").random() < 0.5

    def compare(self, items: list[dict[str, Any]], baseline_field: str = "reference",
                on_done: OnDone | None = None) -> list[dict[str, Any]]:
        assert self.template.kind == "pairwise"
        plans = []
        for it in items:
            variant = self.template.variant_for(it.get("language"), self.prompt_language)
            q, cand, base = question_text(it["messages"]), it["response"], it[baseline_field]
            first = self.candidate_first(it)
            orders = [first, not first] if self.both_orders else [first]
            reqs = [(cf, self._request(variant, parse_preference, question=q,
                                       answer_a=cand if cf else base, answer_b=base if cf else cand))
                    for cf in orders]
            plans.append((it, variant, reqs))
        answers = self._ask([r for _, _, rs in plans for _, r in rs], on_done)
        rows = []
        for it, variant, reqs in plans:
            outcomes, raws, errors, cached = [], [], [], []
            for cf, req in reqs:
                rec = answers[req.key]
                outcomes.append(_from_candidate(rec["value"], cf))
                raws.append(rec["raw"])
                errors.append(rec["error"])
                cached.append(rec["cached"])
            row = self._base_row(it, variant)
            parsed = all(o is not None for o in outcomes)
            inconsistent = (len(set(outcomes)) > 1) if (parsed and len(outcomes) == 2) else None
            verdict = None if not parsed else ("tie" if inconsistent else outcomes[0])
            row.update(verdict=verdict, parsed=parsed, outcomes=outcomes, inconsistent=inconsistent,
                       candidate_first=[cf for cf, _ in reqs], raw=raws, cached=all(cached),
                       error=next((e for e in errors if e), None))
            rows.append(row)
        return rows


def _from_candidate(pref: str | None, candidate_first: bool) -> str | None:
    """Map an A/B/tie preference to win/loss/tie from the candidate's side."""
    if pref is None:
        return None
    if pref == "tie":
        return "tie"
    cand_label = "A" if candidate_first else "B"
    return "win" if pref == cand_label else "loss"
