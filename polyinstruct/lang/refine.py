"""Orthographic tie-breakers for the two language pairs statistical LID confuses.

fastText's lite model calls most Norwegian Danish, and short Bulgarian Russian
(docs/judging.md, "Language identification"). Both pairs differ in spelling rules a few words reveal, so
when an identifier's top label falls in one of these clusters we count marker
words/letters and switch only when the evidence clearly points the other way.
Alphabets settle more: Russian, Ukrainian and Belarusian each lack letters the others use (ы э ё
ъ; і ї є ґ; ў), and Swedish writes ä ö where Danish and Norwegian write æ ø, so a label the
text's letters rule out is replaced inside its group (``alphabet_fix``; every identifier, the
fastText+lingua ensemble included, applies it). Two script facts are used the same way: lid.176
labels some Mandarin as Wu (``wuu``) or Japanese, but Japanese text practically always contains kana; and
text labelled Macedonian that uses letters Macedonian lacks (й щ ъ ь ю я ы э ё)
is Bulgarian or Russian. No candidate set is restricted: text outside the clusters is never touched, and
Danish/Russian text keeps its label (tests check both directions).

Switch off with ``refine=False`` on any identifier to get the raw model output.
"""

from __future__ import annotations

import re

from polyinstruct.lang.scripts import script_regex

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

# Frequent function words / spellings that exist in one standard and not the other.
# Norwegian markers cover Bokmål and Nynorsk.
_NO_WORDS = frozenset(
    "av hva noen meg deg seg etter mye blir ble gjør gjøre nå litt hvis ikkje eg ein eit "
    "kva korleis kvifor dei ho frå berre heller veldig språk kjøpe spørsmål takk bare "
    "sånn slik mellom fordi nok enn mange også dere deres sin sitt sine vei hvilke kanskje "
    "gjennom ut uten igjen mot bra bli gi gir uke ukedag mitt ditt sitt lite snakker snakke betyr "
    "ettermiddag jobber jobbe". split()
)
_DA_WORDS = frozenset(
    "af hvad nogle nogen mig dig sig efter meget bliver blev gør gøre nu lidt hvis sprog "
    "købe spørgsmål tak bare sådan mellem fordi nok end mange også jer jeres vej hvilke "
    "måske gennem ud uden igen mod blive give giver uge ugedag mit dit sit lille taler tale betyder "
    "eftermiddag arbejder arbejde".split()
)
# Words present in both lists carry no evidence.
_NO_ONLY = _NO_WORDS - _DA_WORDS
_DA_ONLY = _DA_WORDS - _NO_WORDS
# Danish infinitive marker "at" vs Norwegian "å"; "øj"/"ej" vs "øy"/"ei" diphthongs.
_DA_PATTERNS = re.compile(r"\b(?:at|øje\w*|dejlig\w*|hjem\w*)\b|øj|\w+hed\b", re.IGNORECASE)
# Word-initial "kj" (kjøpe, kjenne, kjøkken) is Norwegian; Danish writes "kø", "ke".
_NO_PATTERNS = re.compile(r"\bå\b|øy|\w+het\b|\bkj\w+", re.IGNORECASE)

NORDIC = frozenset({"no", "da"})
# Letters an alphabet does not have. Russian has no і ї є ґ ў; Ukrainian no ы э ё ъ (nor ў);
# Belarusian no и щ ъ ї є ґ; Swedish writes ä ö where Danish and Norwegian write æ ø.
_LACKS = {"ru": "іїєґў", "uk": "ыэёъў", "be": "ищъїєґ", "sv": "æø", "da": "äö", "no": "äö"}
EAST_SLAVIC = ("ru", "uk", "be")
SCANDINAVIAN = ("no", "da", "sv")
EAST_SLAVIC_SOUTH = frozenset({"ru", "bg"})
# lid.176 labels some Mandarin as Wu ("wuu") or Japanese; written Wu is rare, and
# Japanese text practically always contains kana.
_HAN = script_regex("Han")
_KANA = script_regex("Hira", "Kana")
_MK_ONLY = "ѓќѕљњџј"
_NOT_MK = "йщъьюяыэё"


def nordic_votes(text: str) -> tuple[int, int]:
    """(Norwegian evidence, Danish evidence) counted on lower-cased words."""
    words = [w.lower() for w in _WORD.findall(text)]
    no = sum(w in _NO_ONLY for w in words) + len(_NO_PATTERNS.findall(text))
    da = sum(w in _DA_ONLY for w in words) + len(_DA_PATTERNS.findall(text))
    return no, da


def cyrillic_votes(text: str) -> tuple[int, int]:
    """(Bulgarian evidence, Russian evidence) from letters one alphabet lacks.

    Russian writes ы, э, ё; Bulgarian has none of them but uses ъ as a vowel in
    very common words (със, към, може да бъде) and ѝ; Russian ъ is a rare hard sign.
    """
    t = text.lower()
    ru = t.count("ы") + t.count("э") + t.count("ё")
    bg = t.count("ъ") + t.count("ѝ")
    return bg, ru


def alphabet_fix(label: str, text: str) -> str:
    """Inside ru/uk/be and no/da/sv: a label whose alphabet lacks a letter the text uses is
    replaced by the group's language whose alphabet has all of them (``_LACKS``), e.g. "uk" for
    a sentence with ы or ё becomes "ru". Unchanged when the text fits the label, or when no
    language of the group fits. Between Danish and Norwegian (both fit a text with æ ø) the
    marker words of ``nordic_votes`` decide, Norwegian on a tie."""
    group = EAST_SLAVIC if label in EAST_SLAVIC else SCANDINAVIAN if label in SCANDINAVIAN else None
    if group is None:
        return label
    t = text.lower()
    if not any(c in t for c in _LACKS[label]):
        return label
    fits = [g for g in group if not any(c in t for c in _LACKS[g])]
    if not fits:
        return label
    if "no" in fits and "da" in fits:
        no, da = nordic_votes(text)
        return "da" if da > no else "no"
    return fits[0]


def refine(label: str, text: str, *, min_votes: int = 2, ratio: float = 2.0) -> str:
    """Return a corrected label for Norwegian/Danish and Bulgarian/Russian, else ``label``.

    Switches only when the other language has at least ``min_votes`` markers and
    ``ratio`` times more evidence than the current label. First, ``alphabet_fix`` corrects a
    ru/uk/be or no/da/sv label the text's letters rule out.
    """
    label = alphabet_fix(label, text)
    if label in ("ja", "wuu"):
        if len(_HAN.findall(text)) >= min_votes and not _KANA.search(text):
            return "zh"
        return label
    if label == "mk":
        t = text.lower()
        if not any(c in t for c in _MK_ONLY) and sum(t.count(c) for c in _NOT_MK) >= min_votes:
            bg, ru = cyrillic_votes(text)
            return "ru" if ru > bg else "bg"
        return label
    if label in NORDIC:
        no, da = nordic_votes(text)
        if label == "da" and no >= min_votes and no >= ratio * da:
            return "no"
        if label == "no" and da >= min_votes and da >= ratio * no:
            return "da"
    elif label in EAST_SLAVIC_SOUTH:
        bg, ru = cyrillic_votes(text)
        if label == "ru" and bg >= min_votes and bg >= ratio * ru:
            return "bg"
        if label == "bg" and ru >= min_votes and ru >= ratio * bg:
            return "ru"
    return label
