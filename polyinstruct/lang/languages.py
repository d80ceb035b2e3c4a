"""The one language table: ISO 639-1 code -> ISO 639-3, FLORES-200 code, script, English name.

Everything that names a language for people (prompts, reports) or for a model or dataset
(NLLB's and Belebele's FLORES-200 codes, Flores files) looks it up here. Codes are the
normalized ISO 639-1 codes of ``polyinstruct.lang.codes`` (Norwegian ``no`` is Bokmål,
``nob_Latn``; Chinese ``zh`` is simplified, ``zho_Hans``); the script is the ISO 15924 part of
the FLORES-200 code (``polyinstruct.lang.scripts`` has its characters).
"""

from __future__ import annotations

from dataclasses import dataclass

from polyinstruct.lang.codes import normalize_code


@dataclass(frozen=True)
class Language:
    code: str     # ISO 639-1 (ISO 639-3 where there is none)
    iso3: str     # ISO 639-3
    flores: str   # FLORES-200 code (NLLB, Belebele, Flores-200 files)
    name: str     # English name

    @property
    def script(self) -> str:
        """ISO 15924 script code (``Latn``, ``Cyrl``, ``Hans``...)."""
        return self.flores.split("_", 1)[1]


# ISO 639-1 -> (English name, FLORES-200 code, ISO 639-3)
_ROWS: dict[str, tuple[str, str, str]] = {
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
LANGUAGES: dict[str, Language] = {c: Language(c, iso3, flores, name) for c, (name, flores, iso3) in _ROWS.items()}


def get_language(code: str) -> Language | None:
    """The table's row for any spelling of a code (``nb``, ``zho``, ``pt-BR``...), or None."""
    return LANGUAGES.get(normalize_code(code))


def english_name(code: str) -> str:
    """English name (the code itself when the table does not know it)."""
    lang = get_language(code)
    return lang.name if lang else code


def flores_code(code: str) -> str | None:
    """FLORES-200 code (``fra_Latn``), or None when the table does not know the language."""
    lang = get_language(code)
    return lang.flores if lang else None
