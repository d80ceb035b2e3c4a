"""Cleaning: duplicate removal, length filters, and the language-identification hook.

Each filter streams records and counts what it removed in a ``CleanReport``,
so nothing disappears without a number. Language identification itself is
another component: anything with ``identify(texts) -> [(code, confidence)]``
(the ``LanguageIdentifier`` protocol of ``polyinstruct.judge``) plugs into
``language_filter``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol, Sequence

from polyinstruct.data.records import Conversation
from polyinstruct.data.tokens import make_counter

_PUNCT_RE = re.compile(r"[^\w\s]", re.UNICODE)
_WS_RE = re.compile(r"\s+")


@dataclass
class CleanReport:
    """Counts of records kept and removed, per reason."""

    kept: int = 0
    removed: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        parts = [f"kept {self.kept}"] + [f"removed {n} ({k})" for k, n in self.removed.most_common()]
        return ", ".join(parts)


def normalize_text(text: str) -> str:
    """NFKC, case-folded, punctuation dropped, whitespace collapsed: near-identical texts compare equal."""
    t = unicodedata.normalize("NFKC", text).casefold()
    return _WS_RE.sub(" ", _PUNCT_RE.sub(" ", t)).strip()


def content_key(conv: Conversation, normalized: bool = False) -> str:
    """A hash of the roles and contents (not the id or metadata)."""
    h = hashlib.blake2b(digest_size=16)
    for m in conv.messages:
        h.update(m.role.encode())
        h.update(b"\x00")
        h.update((normalize_text(m.text) if normalized else m.text).encode("utf-8"))
        h.update(b"\x01")
    return h.hexdigest()


def deduplicate(records: Iterable[Conversation], mode: str = "exact",
                report: CleanReport | None = None) -> Iterator[Conversation]:
    """Keep the first of each duplicate; ``mode`` is ``exact`` or ``normalized``. Memory: 16 bytes per record."""
    if mode not in ("exact", "normalized"):
        raise ValueError(f"dedup mode must be 'exact' or 'normalized', got {mode!r}")
    seen: set[str] = set()
    rep = report if report is not None else CleanReport()
    for conv in records:
        k = content_key(conv, normalized=mode == "normalized")
        if k in seen:
            rep.removed[f"duplicate-{mode}"] += 1
            continue
        seen.add(k)
        rep.kept += 1
        yield conv


def length_filter(records: Iterable[Conversation], *, min_prompt: int = 0, max_prompt: int | None = None,
                  min_completion: int = 1, max_completion: int | None = None, max_total: int | None = None,
                  tokenizer: Any = None, report: CleanReport | None = None) -> Iterator[Conversation]:
    """Drop records whose prompt (user turns), completion (assistant turns) or total length is out of range."""
    count = make_counter(tokenizer)
    rep = report if report is not None else CleanReport()
    for conv in records:
        p = sum(count(m.text) for m in conv.messages if m.role != "assistant")
        c = sum(count(m.text) for m in conv.messages if m.role == "assistant")
        reason = None
        if p < min_prompt:
            reason = "prompt-too-short"
        elif max_prompt is not None and p > max_prompt:
            reason = "prompt-too-long"
        elif c < min_completion:
            reason = "completion-too-short"
        elif max_completion is not None and c > max_completion:
            reason = "completion-too-long"
        elif max_total is not None and p + c > max_total:
            reason = "too-long"
        if reason:
            rep.removed[reason] += 1
            continue
        rep.kept += 1
        yield conv


class LanguageIdentifier(Protocol):
    """What a language-ID backend provides (implemented in the judge area)."""

    def identify(self, texts: Sequence[str]) -> list[tuple[str, float]]: ...


def language_filter(records: Iterable[Conversation], identifier: LanguageIdentifier, *, check: str = "response",
                    min_confidence: float = 0.0, batch_size: int = 256,
                    report: CleanReport | None = None) -> Iterator[Conversation]:
    """Drop records whose text is not in its declared language.

    ``check="response"`` tests the final assistant turn against
    ``response_language``; ``"all"`` tests every turn against its own language.
    A detection below ``min_confidence`` is not trusted and keeps the record.
    """
    if check not in ("response", "all"):
        raise ValueError("check must be 'response' or 'all'")
    rep = report if report is not None else CleanReport()
    batch: list[Conversation] = []

    def flush() -> Iterator[Conversation]:
        texts, owners = [], []
        for i, conv in enumerate(batch):
            idx = [len(conv.messages) - 1] if check == "response" else range(len(conv.messages))
            for j in idx:
                lang = conv.message_language(j)
                if lang and conv.messages[j].role != "system":
                    texts.append(conv.messages[j].content)
                    owners.append((i, lang))
        bad = set()
        for (i, lang), (code, conf) in zip(owners, identifier.identify(texts) if texts else [], strict=True):
            if conf >= min_confidence and code.split("-")[0].split("_")[0] != lang.split("-")[0]:
                bad.add(i)
        for i, conv in enumerate(batch):
            if i in bad:
                rep.removed["wrong-language"] += 1
            else:
                rep.kept += 1
                yield conv
        batch.clear()

    for conv in records:
        batch.append(conv)
        if len(batch) >= batch_size:
            yield from flush()
    yield from flush()
