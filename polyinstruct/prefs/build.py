"""Language-consistency preference pairs built from a model's own answers (``polyinstruct data prefs``).

1. Sample: each prompt is answered ``k`` times by any inference backend (``infer.predict``: batched,
   resumable by id; the samples sit in ``samples.jsonl`` under the output folder, ids ``<id>#<j>``).
   Optionally, another arm's predictions (``rejected_from``) join the candidates.
2. Score every candidate: language ID (``lang``), echo detection (``lang.echo``), emptiness, and, where
   the prompt has a reference answer, sentence chrF against it.
3. Pair: chosen = a *good* answer (in the prompt's language, not an echo, not empty; the best by chrF when
   references exist, else the first sampled); rejected = a *bad* one (another language, undetermined, an
   echo, empty), or, when every candidate is good and references exist, the lowest-chrF one if it trails
   the chosen by at least ``min_chrf_gap``. ``reference_as_chosen``: when no sampled answer is good, the
   reference answer is the chosen side. The reasons go into ``meta.reasons`` (``rejected:echo``,
   ``rejected:other-language``, ``chosen:reference``, ...) and the scores into ``meta.scores``.
Prompts with no usable pair are counted per reason in the report, never silently dropped.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from polyinstruct.data.records import Conversation, Message, Preference
from polyinstruct.fileio import iter_jsonl, write_json

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    text: str
    origin: str  # "sample" | "other" | "reference"
    language: str | None = None  # detected
    match: bool | None = None  # same language as the prompt (None: undetermined)
    echo: bool = False
    empty: bool = False
    chrf: float | None = None

    @property
    def good(self) -> bool:
        return not self.empty and not self.echo and self.match is True

    def faults(self) -> list[str]:
        out = []
        if self.empty:
            out.append("empty")
        elif self.echo:
            out.append("echo")
        if not self.empty:
            if self.match is False:
                out.append("other-language")
            elif self.match is None:
                out.append("undetermined-language")
        return out

    def scores(self) -> dict[str, Any]:
        d = {"origin": self.origin, "lid": self.language, "echo": self.echo, "empty": self.empty}
        if self.chrf is not None:
            d["chrf"] = round(self.chrf, 2)
        return d


@dataclass
class PrefsReport:
    prompts: int = 0
    pairs: int = 0
    skipped: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    candidates: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"prompts": self.prompts, "pairs": self.pairs, "skipped": dict(self.skipped),
                "reasons": dict(self.reasons.most_common()), "candidates": dict(self.candidates.most_common())}


def _last_user(messages: list[Message]) -> str:
    for m in reversed(messages):
        if m.role == "user":
            return m.text
    return ""


def score_candidates(cands: list[Candidate], prompt: str, language: str | None, reference: str | None,
                     identifier) -> None:
    """Fill language, match, echo, empty and chrF of each candidate (in place)."""
    from polyinstruct.lang.codes import same_language
    from polyinstruct.lang.echo import echoes_prompt

    ids = identifier.identify([c.text for c in cands])
    chrf = None
    if reference:
        from sacrebleu.metrics import CHRF

        chrf = CHRF()
    for c, (code, _conf) in zip(cands, ids):
        c.empty = not c.text.strip()
        c.language = code
        c.match = same_language(code, language) if language else None
        c.echo = not c.empty and echoes_prompt(c.text, prompt)
        if chrf is not None and not c.empty:
            c.chrf = float(chrf.sentence_score(c.text, [reference]).score)
        elif chrf is not None:
            c.chrf = 0.0


def choose_pair(cands: list[Candidate], *, min_chrf_gap: float = 10.0) -> tuple[Candidate, Candidate, list[str]] | str:
    """(chosen, rejected, reasons), or the reason no pair can be made."""
    good = [c for c in cands if c.good]
    bad = [c for c in cands if not c.good]
    if not good:
        return "no-good-answer"
    has_chrf = all(c.chrf is not None for c in good)
    chosen = max(good, key=lambda c: (c.chrf or 0.0, c.origin == "reference")) if has_chrf else good[0]
    if bad:
        # the most instructive bad answer: a real answer in another language first, then echoes, then the rest
        order = {"other-language": 0, "echo": 1, "undetermined-language": 2, "empty": 3}
        rejected = min(bad, key=lambda c: min(order.get(f, 9) for f in c.faults()))
        return chosen, rejected, [f"rejected:{f}" for f in rejected.faults()] + [f"chosen:{chosen.origin}"]
    others = [c for c in good if c is not chosen]
    if has_chrf and others:
        worst = min(others, key=lambda c: c.chrf)
        if chosen.chrf - worst.chrf >= min_chrf_gap:
            return chosen, worst, ["rejected:lower-chrf", f"chosen:{chosen.origin}"]
    return "all-answers-good"


def build_pairs(prompts: list[Conversation], samples: dict[str, list[str]], identifier, *,
                other: dict[str, str] | None = None, reference_as_chosen: bool = False,
                min_chrf_gap: float = 10.0) -> tuple[list[Preference], PrefsReport]:
    """Pairs from each prompt's sampled answers (``samples[id]``) and ``other[id]`` (another arm's answer)."""
    rep = PrefsReport()
    out: list[Preference] = []
    for conv in prompts:
        rep.prompts += 1
        prefix = conv.prompt_messages
        reference = conv.messages[-1].content if conv.messages and conv.messages[-1].role == "assistant" else None
        lang = conv.language or (prefix[-1].language if prefix else None)
        cands = [Candidate(t, "sample") for t in samples.get(conv.id, [])]
        if other and conv.id in other:
            cands.append(Candidate(other[conv.id], "other"))
        if reference_as_chosen and reference:
            cands.append(Candidate(reference, "reference"))
        if not cands:
            rep.skipped["no-answers"] += 1
            continue
        score_candidates(cands, _last_user(prefix), lang, reference, identifier)
        for c in cands:
            rep.candidates["good" if c.good else (c.faults() or ["bad"])[0]] += 1
        if reference_as_chosen:  # the reference is the fallback, only when no sampled answer is good
            sampled_good = [c for c in cands if c.good and c.origin != "reference"]
            if sampled_good:
                cands = [c for c in cands if c.origin != "reference"]
        got = choose_pair(cands, min_chrf_gap=min_chrf_gap)
        if isinstance(got, str):
            rep.skipped[got] += 1
            continue
        chosen, rejected, reasons = got
        rep.pairs += 1
        rep.reasons.update(reasons)
        out.append(Preference(
            id=conv.id, prefix=list(prefix), chosen=Message("assistant", chosen.text, lang),
            rejected=Message("assistant", rejected.text, rejected.language if rejected.match is False else lang),
            language=lang, source="prefs", meta={"reasons": reasons, "scores": {"chosen": chosen.scores(),
                                                                             "rejected": rejected.scores()}}))
    return out, rep


def sample_answers(prompts: list[Conversation], model: str, out_dir: Path, *, k: int, backend: str = "hf",
                   decoding: str = "sample", max_new_tokens: int = 128, batch_size: int = 8, seed: int = 0,
                   backend_kwargs: dict[str, Any] | None = None, generator=None) -> dict[str, list[str]]:
    """``k`` answers per prompt through ``infer.predict`` (resumable: ids ``<id>#<j>`` already in
    ``samples.jsonl`` are not generated again). ``generator``: a ready backend object instead of ``model``."""
    from polyinstruct.infer.backend import DecodingParams
    from polyinstruct.infer.predict import predict

    if decoding == "sample":
        params: Any = DecodingParams(max_new_tokens=max_new_tokens, do_sample=True, temperature=0.9, top_p=0.95,
                                     seed=seed)
    else:
        params = decoding
    rows = []
    for c in prompts:
        for j in range(k):
            d = c.to_dict()
            d["id"] = f"{c.id}#{j}"
            rows.append(d)
    path = out_dir / "samples.jsonl"
    predict(rows, generator or model, path, backend=backend, decoding=params, max_new_tokens=max_new_tokens,
            batch_size=batch_size, backend_kwargs=backend_kwargs, model_name=str(model))
    got: dict[str, list[str]] = {}
    for r in iter_jsonl(path):
        base = str(r["id"]).rsplit("#", 1)[0]
        got.setdefault(base, []).append(r.get("response") or "")
    return got


def read_other(path: str | os.PathLike) -> dict[str, str]:
    """Another arm's predictions file (``infer.predict`` rows): id -> response."""
    return {str(r["id"]): r.get("response") or "" for r in iter_jsonl(Path(path))}


def make_prefs(data: str | os.PathLike | Iterable[Conversation], model: str, out_dir: str | os.PathLike, *,
               k: int = 4, backend: str = "hf", decoding: str = "sample", max_new_tokens: int = 128,
               batch_size: int = 8, seed: int = 0, lid: str = "auto", rejected_from: str | None = None,
               reference_as_chosen: bool = False, min_chrf_gap: float = 10.0, limit: int | None = None,
               backend_kwargs: dict[str, Any] | None = None, generator=None) -> dict[str, Any]:
    """Sample, score, pair; writes ``pairs.jsonl`` (preference records) and ``report.json`` to ``out_dir``."""
    from polyinstruct.data.preference import write_preferences
    from polyinstruct.infer.predict import load_conversations
    from polyinstruct.lang.identify import load_identifier

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompts = list(data) if not isinstance(data, (str, os.PathLike)) else list(load_conversations(data, None))
    prompts = [c if isinstance(c, Conversation) else Conversation.from_dict(c) for c in prompts][:limit]
    samples = sample_answers(prompts, model, out, k=k, backend=backend, decoding=decoding,
                             max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                             backend_kwargs=backend_kwargs, generator=generator) if k > 0 else {}
    other = read_other(rejected_from) if rejected_from else None
    pairs, rep = build_pairs(prompts, samples, load_identifier(lid), other=other,
                             reference_as_chosen=reference_as_chosen, min_chrf_gap=min_chrf_gap)
    n = write_preferences(iter(pairs), out / "pairs.jsonl")
    report = {**rep.to_dict(), "k": k, "model": str(model), "pairs_file": str(out / "pairs.jsonl"), "written": n}
    write_json(out / "report.json", report)
    log.info("data prefs: %d pairs from %d prompts (%s)", n, rep.prompts, json.dumps(dict(rep.skipped)))
    return report
