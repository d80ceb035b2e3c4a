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

# ISO 639-1 -> (English name, FLORES-200 code, ISO 639-3)
LANGUAGES: dict[str, tuple[str, str, str]] = {
    "af": ("Afrikaans", "afr_Latn", "afr"), "ar": ("Arabic", "arb_Arab", "ara"),
    "bg": ("Bulgarian", "bul_Cyrl", "bul"), "bn": ("Bengali", "ben_Beng", "ben"),
    "ca": ("Catalan", "cat_Latn", "cat"), "cs": ("Czech", "ces_Latn", "ces"),
    "cy": ("Welsh", "cym_Latn", "cym"), "da": ("Danish", "dan_Latn", "dan"),
    "de": ("German", "deu_Latn", "deu"), "el": ("Greek", "ell_Grek", "ell"),
    "en": ("English", "eng_Latn", "eng"), "es": ("Spanish", "spa_Latn", "spa"),
    "et": ("Estonian", "est_Latn", "est"), "eu": ("Basque", "eus_Latn", "eus"),
    "fa": ("Persian", "pes_Arab", "fas"), "fi": ("Finnish", "fin_Latn", "fin"),
    "fr": ("French", "fra_Latn", "fra"), "ga": ("Irish", "gle_Latn", "gle"),
    "gl": ("Galician", "glg_Latn", "glg"), "gu": ("Gujarati", "guj_Gujr", "guj"),
    "he": ("Hebrew", "heb_Hebr", "heb"), "hi": ("Hindi", "hin_Deva", "hin"),
    "hr": ("Croatian", "hrv_Latn", "hrv"), "hu": ("Hungarian", "hun_Latn", "hun"),
    "hy": ("Armenian", "hye_Armn", "hye"), "id": ("Indonesian", "ind_Latn", "ind"),
    "is": ("Icelandic", "isl_Latn", "isl"), "it": ("Italian", "ita_Latn", "ita"),
    "ja": ("Japanese", "jpn_Jpan", "jpn"), "ka": ("Georgian", "kat_Geor", "kat"),
    "kk": ("Kazakh", "kaz_Cyrl", "kaz"), "ko": ("Korean", "kor_Hang", "kor"),
    "lt": ("Lithuanian", "lit_Latn", "lit"), "lv": ("Latvian", "lvs_Latn", "lav"),
    "mk": ("Macedonian", "mkd_Cyrl", "mkd"), "ml": ("Malayalam", "mal_Mlym", "mal"),
    "mr": ("Marathi", "mar_Deva", "mar"), "ms": ("Malay", "zsm_Latn", "msa"),
    "nl": ("Dutch", "nld_Latn", "nld"), "no": ("Norwegian", "nob_Latn", "nob"),
    "pl": ("Polish", "pol_Latn", "pol"), "pt": ("Portuguese", "por_Latn", "por"),
    "ro": ("Romanian", "ron_Latn", "ron"), "ru": ("Russian", "rus_Cyrl", "rus"),
    "sk": ("Slovak", "slk_Latn", "slk"), "sl": ("Slovenian", "slv_Latn", "slv"),
    "sq": ("Albanian", "als_Latn", "sqi"), "sr": ("Serbian", "srp_Cyrl", "srp"),
    "sv": ("Swedish", "swe_Latn", "swe"), "sw": ("Swahili", "swh_Latn", "swa"),
    "ta": ("Tamil", "tam_Taml", "tam"), "te": ("Telugu", "tel_Telu", "tel"),
    "th": ("Thai", "tha_Thai", "tha"), "tl": ("Tagalog", "tgl_Latn", "tgl"),
    "tr": ("Turkish", "tur_Latn", "tur"), "uk": ("Ukrainian", "ukr_Cyrl", "ukr"),
    "ur": ("Urdu", "urd_Arab", "urd"), "uz": ("Uzbek", "uzn_Latn", "uzb"),
    "vi": ("Vietnamese", "vie_Latn", "vie"), "zh": ("Chinese", "zho_Hans", "zho"),
}


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
