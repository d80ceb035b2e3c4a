"""Quality gates for machine-translated messages: each failure is a named reason.

Reasons, checked in this order (the first failure rejects the record):

- ``empty-translation``: the engine returned nothing for a non-empty piece;
- ``protected-span-lost``: a protected tag (code, URL, placeholder) was lost or repeated;
- ``untranslated-copy``: a piece with at least ``copy_min_letters`` letters came back
  (nearly) unchanged (character similarity >= ``copy_similarity``);
- ``length-ratio``: translated / source characters (outside code) outside the bounds;
- ``number-changed``: the digit runs differ (``protect.digit_runs``);
- ``wrong-language``: language ID of the translated message names another language
  (undetermined, e.g. a short or code-only message, passes and is counted);
- ``low-back-translation-chrf``: with back-translation on, chrF of the round trip
  against the source is below ``min_bt_chrf``.

See docs/translation.md.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from polyinstruct.lang.codes import UND, normalize_code
from polyinstruct.translate.protect import digit_runs, strip_protected

REASONS = ("engine-error", "empty-translation", "protected-span-lost", "untranslated-copy", "length-ratio",
           "number-changed", "wrong-language", "low-back-translation-chrf")
_CJK_LANGS = {"zh", "ja", "ko"}
_LETTER = re.compile(r"[^\W\d_]")


@dataclass
class GateConfig:
    lid: str = "fasttext-lite"
    min_ratio: float | None = None  # None: by script (see default_ratio_bounds)
    max_ratio: float | None = None
    ratio_min_chars: int = 20
    copy_similarity: float = 0.9
    copy_min_letters: int = 20
    check_numbers: bool = True
    back_translate: bool = False
    min_bt_chrf: float = 25.0

    def ratio_bounds(self, src: str, tgt: str) -> tuple[float, float]:
        lo, hi = default_ratio_bounds(src, tgt)
        return (self.min_ratio if self.min_ratio is not None else lo,
                self.max_ratio if self.max_ratio is not None else hi)


def default_ratio_bounds(src: str, tgt: str) -> tuple[float, float]:
    """Character-length bounds: an ideographic script needs far fewer characters than an alphabet."""
    s, t = normalize_code(src) in _CJK_LANGS, normalize_code(tgt) in _CJK_LANGS
    if t and not s:
        return 0.1, 1.2
    if s and not t:
        return 0.8, 10.0
    return 0.4, 2.5


class GateFailure(Exception):
    def __init__(self, reason: str, detail: str):
        assert reason in REASONS, reason
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def check_units(sources: list[str], outputs: list[str], cfg: GateConfig) -> None:
    """Per piece: empty output and untranslated copies (pieces hold <xN/> tags, not the spans)."""
    for s, o in zip(sources, outputs):
        if not o.strip():
            raise GateFailure("empty-translation", f"nothing came back for {s[:80]!r}")
        letters = len(_LETTER.findall(s))
        if letters >= cfg.copy_min_letters:
            a, b = _norm(s), _norm(o)
            if a == b or difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= cfg.copy_similarity:
                raise GateFailure("untranslated-copy", f"{o[:80]!r} is the source left (nearly) as is")


def check_message(source: str, translated: str, src: str, tgt: str, cfg: GateConfig) -> float | None:
    """Length ratio and numbers of one message; returns the ratio (None when too short to judge)."""
    s, t = strip_protected(source), strip_protected(translated)
    ratio = None
    if len(s) >= cfg.ratio_min_chars:
        ratio = len(t) / len(s)
        lo, hi = cfg.ratio_bounds(src, tgt)
        if not lo <= ratio <= hi:
            raise GateFailure("length-ratio", f"translation/source length {ratio:.2f} outside [{lo}, {hi}]")
    if cfg.check_numbers:
        a, b = digit_runs(source), digit_runs(translated)
        if a != b:
            missing = sorted((a - b).elements())
            extra = sorted((b - a).elements())
            bits = [f"missing {', '.join(missing)}"] if missing else []
            bits += [f"new {', '.join(extra)}"] if extra else []
            raise GateFailure("number-changed", "; ".join(bits))
    return ratio


def check_language(detected: tuple[str, float], tgt: str) -> None:
    code, conf = detected
    if code != UND and code != normalize_code(tgt):
        raise GateFailure("wrong-language", f"language ID says {code} ({conf:.2f}), expected {normalize_code(tgt)}")


def chrf(hypothesis: str, reference: str) -> float:
    """Sentence chrF (sacrebleu, 0-100)."""
    from sacrebleu.metrics import CHRF

    return float(CHRF().sentence_score(hypothesis, [reference]).score)
