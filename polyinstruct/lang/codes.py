"""One language-code vocabulary, so labels from every identifier compare equal.

Identifiers disagree on spelling: fastText lid.176 says ``no`` / ``nn`` / ``zh``,
OpenLID says ``nob_Latn`` / ``zho_Hans``, lingua says ``NB`` / ``NN``, datasets
say ``zh-CN`` or ``cmn``. ``normalize_code`` maps all of them to one ISO 639-1
code (3-letter ISO 639-3 when a language has no 2-letter code), and ``und`` for
"no language / undetermined".

Deliberate merges (documented in docs/judging.md):
- Norwegian Bokmål, Nynorsk and macro-Norwegian (nb, nn, no, nob, nno, nor) -> ``no``:
  the seed asks "is the answer Norwegian?", not which written standard.
- Chinese variants (zh-Hans, zh-Hant, zh-CN, zh-TW, cmn, zho, chi) -> ``zh``.
  Cantonese (yue) and Wu (wuu) stay distinct languages.
- Script and region suffixes are dropped (``eng_Latn`` -> ``en``, ``pt-BR`` -> ``pt``).
"""

from __future__ import annotations

UND = "und"

# ISO 639-2/3 (incl. 639-2/B and common individual codes of macrolanguages) -> ISO 639-1.
_THREE_TO_TWO: dict[str, str] = {
    "afr": "af", "amh": "am", "ara": "ar", "arb": "ar", "ary": "ar", "arz": "ar", "apc": "ar",
    "ars": "ar", "acm": "ar", "ajp": "ar", "aeb": "ar", "asm": "as", "aze": "az", "azj": "az",
    "azb": "az", "bak": "ba", "bel": "be", "ben": "bn", "bod": "bo", "tib": "bo", "bos": "bs",
    "bre": "br", "bul": "bg", "cat": "ca", "ces": "cs", "cze": "cs", "che": "ce", "cym": "cy",
    "wel": "cy", "dan": "da", "deu": "de", "ger": "de", "ell": "el", "gre": "el", "eng": "en",
    "epo": "eo", "est": "et", "ekk": "et", "eus": "eu", "baq": "eu", "fao": "fo", "fas": "fa",
    "per": "fa", "pes": "fa", "prs": "fa", "fin": "fi", "fra": "fr", "fre": "fr", "fry": "fy",
    "gle": "ga", "gla": "gd", "glg": "gl", "grn": "gn", "guj": "gu", "hau": "ha", "heb": "he",
    "hin": "hi", "hrv": "hr", "hun": "hu", "hye": "hy", "arm": "hy", "ibo": "ig", "ind": "id",
    "isl": "is", "ice": "is", "ita": "it", "jpn": "ja", "jav": "jv", "kat": "ka", "geo": "ka",
    "kaz": "kk", "khm": "km", "kan": "kn", "kor": "ko", "kur": "ku", "kmr": "ku", "ckb": "ku",
    "kir": "ky", "lat": "la", "ltz": "lb", "lao": "lo", "lit": "lt", "lav": "lv", "lvs": "lv",
    "mlg": "mg", "plt": "mg", "mri": "mi", "mao": "mi", "mkd": "mk", "mac": "mk", "mal": "ml",
    "mon": "mn", "khk": "mn", "mar": "mr", "msa": "ms", "may": "ms", "zsm": "ms", "mlt": "mt",
    "mya": "my", "bur": "my", "nep": "ne", "npi": "ne", "nld": "nl", "dut": "nl", "oci": "oc",
    "ori": "or", "ory": "or", "orm": "om", "gaz": "om", "pan": "pa", "pol": "pl", "pus": "ps",
    "pbt": "ps", "por": "pt", "que": "qu", "quy": "qu", "roh": "rm", "ron": "ro", "rum": "ro",
    "rus": "ru", "san": "sa", "snd": "sd", "sin": "si", "slk": "sk", "slo": "sk", "slv": "sl",
    "smo": "sm", "sna": "sn", "som": "so", "sqi": "sq", "alb": "sq", "als": "sq", "srp": "sr",
    "sun": "su", "swe": "sv", "swa": "sw", "swh": "sw", "tam": "ta", "tel": "te", "tgk": "tg",
    "tha": "th", "tir": "ti", "tuk": "tk", "tgl": "tl", "fil": "tl", "tsn": "tn", "tur": "tr",
    "tat": "tt", "uig": "ug", "ukr": "uk", "urd": "ur", "uzb": "uz", "uzn": "uz", "vie": "vi",
    "wol": "wo", "xho": "xh", "yid": "yi", "ydd": "yi", "yor": "yo", "zul": "zu",
    # merges (see module docstring)
    "zho": "zh", "chi": "zh", "cmn": "zh", "nob": "no", "nno": "no", "nor": "no",
}

# Two-letter aliases folded together.
_TWO_ALIASES: dict[str, str] = {"nb": "no", "nn": "no", "iw": "he", "in": "id", "ji": "yi", "jw": "jv"}

_UNDETERMINED = {"", "und", "unk", "unknown", "zxx", "mul", "mis", "none", "null", "xx"}

# English names some tools emit (lingua's enum names, plain words in datasets).
_NAMES: dict[str, str] = {
    "english": "en", "french": "fr", "spanish": "es", "russian": "ru", "bulgarian": "bg",
    "chinese": "zh", "bengali": "bn", "bangla": "bn", "norwegian": "no", "bokmal": "no",
    "nynorsk": "no", "danish": "da", "swedish": "sv", "german": "de", "czech": "cs",
    "finnish": "fi", "italian": "it", "portuguese": "pt", "japanese": "ja", "korean": "ko",
    "ukrainian": "uk", "polish": "pl", "dutch": "nl", "arabic": "ar", "hindi": "hi",
    "turkish": "tr", "macedonian": "mk", "serbian": "sr", "belarusian": "be",
}


def normalize_code(code: str | None) -> str:
    """Map any language label (ISO 639-1/2/3, BCP-47, fastText/OpenLID label) to one code.

    Returns ``"und"`` for empty or explicitly undetermined labels. Unknown but
    well-formed codes pass through lower-cased (so two tools emitting the same
    unusual code still compare equal).
    """
    if code is None:
        return UND
    c = str(code).strip()
    if c.startswith("__label__"):
        c = c[len("__label__"):]
    c = c.replace("-", "_").lower()
    if c in _NAMES:
        return _NAMES[c]
    base = c.split("_", 1)[0]
    if base in _UNDETERMINED:
        return UND
    if base in _TWO_ALIASES:
        return _TWO_ALIASES[base]
    if len(base) == 3 and base in _THREE_TO_TWO:
        return _THREE_TO_TWO[base]
    return base


def same_language(a: str | None, b: str | None) -> bool | None:
    """True/False when both labels are determined; None when either is ``und``.

    None is the "undetermined" policy: neither a match nor a mismatch, so the
    language penalty is not applied (see ``scores.apply_language_penalty``).
    """
    na, nb = normalize_code(a), normalize_code(b)
    if na == UND or nb == UND:
        return None
    return na == nb


# A language code as data and configs may declare it: an ISO 639 code (2-3 lower-case letters)
# with optional script/region subtags (``zh-Hans``, ``pt_BR``, ``nob_Latn``). Nothing else: no
# path separators, dots or spaces, since codes become file and folder names.
_CODE_SHAPE = r"[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*"


def language_code_problem(code: object) -> str | None:
    """Why ``code`` is not a usable language code, or None when it is one."""
    import re

    if isinstance(code, bool):
        return (f"language code {code!r} is a YAML boolean; write the code as a string (polyinstruct reads "
                "`no` as Norwegian, but other YAML tools may need quotes: \"no\")")
    if not isinstance(code, str):
        return f"language code must be a string, got {type(code).__name__} {code!r}"
    if not re.fullmatch(_CODE_SHAPE, code):
        return (f"{code!r} is not a language code (ISO 639-1/3 like 'en', 'no', 'zho', optionally with a "
                "script/region subtag like 'zh-Hans'; no paths, dots or spaces)")
    return None


def validate_language_code(code: object) -> str:
    """Return ``code`` when it is a well-formed language code, else raise ``ValueError`` saying why.

    Callers wrap the message in their own located error (``ConfigError`` with
    the file and field, ``RecordError`` with ``path:line``).
    """
    problem = language_code_problem(code)
    if problem:
        raise ValueError(problem)
    return code  # type: ignore[return-value]
