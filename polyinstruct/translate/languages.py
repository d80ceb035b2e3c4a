"""Language names and the codes each translation model family expects.

polyinstruct speaks ISO 639-1 (``polyinstruct.lang.codes.normalize_code``);
translation models each have their own convention:

- **NLLB-200**: FLORES-200 codes with script, ``eng_Latn``, ``fra_Latn``, ``zho_Hans``;
  the source is set on the tokenizer (``src_lang``) and the target is forced as the
  first generated token.
- **M2M-100**: ISO 639-1 codes (``en``, ``fr``, ``zh``), same mechanism via
  ``tokenizer.get_lang_id``.
- **Marian (OPUS-MT)**: one model per pair (``Helsinki-NLP/opus-mt-en-fr``) or a
  multi-target model that needs a ``>>fra<<`` (ISO 639-3) or ``>>fr<<`` token in
  front of the source; it is added when the tokenizer knows it.
"""

from __future__ import annotations

import re

from polyinstruct.errors import ConfigError
from polyinstruct.lang.codes import normalize_code
from polyinstruct.lang.languages import LANGUAGES as _TABLE

# ISO 639-1 -> (English name, FLORES-200 code, ISO 639-3), from the one language table (polyinstruct.lang.languages)
LANGUAGES: dict[str, tuple[str, str, str]] = {c: (lg.name, lg.flores, lg.iso3) for c, lg in _TABLE.items()}


def parse_code(code: str, *, field: str = "language") -> str:
    """Normalize a user-given code; reject undetermined ones."""
    c = normalize_code(code)
    if c == "und":
        raise ConfigError(f"{code!r} is not a language code", field=field)
    return c


def language_name(code: str) -> str:
    """English name for prompts (the code itself when unknown)."""
    return LANGUAGES.get(normalize_code(code), (code,))[0]


def nllb_code(code: str) -> str:
    if re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", code):
        return code  # already a FLORES-200 code
    c = normalize_code(code)
    if c not in LANGUAGES:
        raise ConfigError(f"no NLLB (FLORES-200) code known for {code!r}; pass the FLORES code itself "
                          f"(e.g. fra_Latn) with --src/--to", field="language")
    return LANGUAGES[c][1]


def m2m_code(code: str) -> str:
    """M2M-100 uses ISO 639-1 (Norwegian is ``no``, Chinese ``zh``)."""
    return normalize_code(code)


def marian_tokens(code: str) -> list[str]:
    """Target-language tokens multi-target OPUS-MT models may use, most specific first."""
    c = normalize_code(code)
    out = []
    if c in LANGUAGES:
        out.append(f">>{LANGUAGES[c][2]}<<")
    out.append(f">>{c}<<")
    if c == "zh":
        out += [">>cmn_Hans<<", ">>cmn<<"]
    if c == "no":
        out += [">>nob<<", ">>nb<<"]
    return out
