"""Cross-lingual instruction data (seed 4, x-LLaMA's CoIT): translation tasks and
general tasks answered in another language.

Instruction wording exists in en, fr, es, ru, bg and zh (two phrasings each),
so a model sees "translate" and "answer in X" asked in several languages. Every
record marks the language of each turn: the user turn in the instruction's
language, the assistant turn in the language it must answer in.
"""

from __future__ import annotations

import random
from typing import Iterable, Sequence

from polyinstruct.data.records import Conversation, Message
from polyinstruct.errors import DataError
from polyinstruct.lang.languages import english_name

# Language names as they appear inside an instruction in each language.
# ru: accusative adjective (used with "на ... язык"), ru_prep: prepositional ("на ... языке").
LANGUAGE_NAMES: dict[str, dict[str, str]] = {
    "en": {c: english_name(c) for c in ("en", "fr", "es", "ru", "bg", "zh", "bn", "no", "de")},  # lang.languages
    "fr": {"en": "anglais", "fr": "français", "es": "espagnol", "ru": "russe", "bg": "bulgare", "zh": "chinois",
           "bn": "bengali", "no": "norvégien", "de": "allemand"},
    "es": {"en": "inglés", "fr": "francés", "es": "español", "ru": "ruso", "bg": "búlgaro", "zh": "chino",
           "bn": "bengalí", "no": "noruego", "de": "alemán"},
    "ru": {"en": "английский", "fr": "французский", "es": "испанский", "ru": "русский", "bg": "болгарский",
           "zh": "китайский", "bn": "бенгальский", "no": "норвежский", "de": "немецкий"},
    "ru_prep": {"en": "английском", "fr": "французском", "es": "испанском", "ru": "русском", "bg": "болгарском",
                "zh": "китайском", "bn": "бенгальском", "no": "норвежском", "de": "немецком"},
    "bg": {"en": "английски", "fr": "френски", "es": "испански", "ru": "руски", "bg": "български", "zh": "китайски",
           "bn": "бенгалски", "no": "норвежки", "de": "немски"},
    "zh": {"en": "英语", "fr": "法语", "es": "西班牙语", "ru": "俄语", "bg": "保加利亚语", "zh": "中文",
           "bn": "孟加拉语", "no": "挪威语", "de": "德语"},
}

TRANSLATE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": ("Translate the following text into {tgt}.\n\n{text}", "What is this in {tgt}?\n{text}"),
    "fr": ("Traduisez le texte suivant en {tgt}.\n\n{text}", "Peux-tu traduire cette phrase en {tgt} ?\n{text}"),
    "es": ("Traduce el siguiente texto al {tgt}.\n\n{text}", "¿Puedes traducir esta frase al {tgt}?\n{text}"),
    "ru": ("Переведите следующий текст на {tgt} язык.\n\n{text}", "Переведи на {tgt} язык:\n{text}"),
    "bg": ("Преведете следния текст на {tgt}.\n\n{text}", "Моля, преведи на {tgt}:\n{text}"),
    "zh": ("请把下面的文字翻译成{tgt}。\n\n{text}", "将以下句子译为{tgt}：\n{text}"),
}

ANSWER_IN_TEMPLATES: dict[str, str] = {
    "en": "Answer in {tgt}.",
    "fr": "Répondez en {tgt}.",
    "es": "Responde en {tgt}.",
    "ru": "Ответьте на {tgt_prep} языке.",
    "bg": "Отговорете на {tgt}.",
    "zh": "请用{tgt}回答。",
}


def _name(inst_lang: str, code: str, key: str | None = None) -> str:
    names = LANGUAGE_NAMES.get(key or inst_lang, {})
    if code not in names:
        raise DataError(f"no name for language {code!r} in {inst_lang!r} instructions; add it to "
                        "crosslingual.LANGUAGE_NAMES", field="language")
    return names[code]


def translation_prompt(text: str, src: str, tgt: str, inst_lang: str = "en", variant: int = 0) -> str:
    """A translation instruction worded in ``inst_lang`` asking to translate ``text`` into ``tgt``."""
    if inst_lang not in TRANSLATE_TEMPLATES:
        raise DataError(f"no translation wording in {inst_lang!r}; known: {', '.join(TRANSLATE_TEMPLATES)}",
                        field="instruction_languages")
    templates = TRANSLATE_TEMPLATES[inst_lang]
    return templates[variant % len(templates)].format(tgt=_name(inst_lang, tgt), text=text)


def answer_in(inst_lang: str, tgt: str) -> str:
    """"Answer in <tgt>." worded in ``inst_lang``."""
    return ANSWER_IN_TEMPLATES[inst_lang].format(tgt=_name(inst_lang, tgt),
                                                 tgt_prep=_name(inst_lang, tgt, "ru_prep") if inst_lang == "ru" else "")


def translation_instructions(pairs: Iterable[tuple[str, str, str]], lang: str, *,
                             instruction_languages: Sequence[str] | None = None,
                             directions: Sequence[str] = ("to", "from"), seed: int = 0,
                             source: str | None = None) -> list[Conversation]:
    """Turn ``(id, en, xx)`` sentence pairs into translation instructions.

    ``directions``: ``"to"`` is English -> ``lang``, ``"from"`` is ``lang`` ->
    English. Each record's instruction language is drawn (seeded) from
    ``instruction_languages`` (default: English and ``lang`` when worded there).
    """
    langs = list(instruction_languages or [c for c in ("en", lang) if c in TRANSLATE_TEMPLATES])
    for c in langs:
        if c not in TRANSLATE_TEMPLATES:
            raise DataError(f"no translation wording in {c!r}; known: {', '.join(TRANSLATE_TEMPLATES)}",
                            field="instruction_languages")
    rng = random.Random(seed)
    out = []
    for pid, en, xx in pairs:
        for d in directions:
            if d not in ("to", "from"):
                raise DataError(f"direction must be 'to' or 'from', got {d!r}", field="directions")
            src, tgt, text, answer = ("en", lang, en, xx) if d == "to" else (lang, "en", xx, en)
            inst = rng.choice(langs)
            prompt = translation_prompt(text, src, tgt, inst, rng.randrange(2))
            out.append(Conversation(
                id=f"{pid}-{src}-{tgt}", language=inst, source=source or f"polyinstruct-parallel-en-{lang}",
                tags=["translation"], license="Apache-2.0",
                messages=[Message("user", prompt, inst), Message("assistant", answer, tgt)],
                meta={"source_language": src, "target_language": tgt}))
    return out


def crosslingual_tasks(per_language: dict[str, list[Conversation]], *, answer_languages: Sequence[str] | None = None,
                       seed: int = 0, per_prompt: int = 1, source: str = "polyinstruct-crosslingual") -> list[Conversation]:
    """Ask in one language, answer in another, from parallel datasets (same ids).

    For every id and prompt language A, ``per_prompt`` answer languages B != A
    are drawn (seeded) from ``answer_languages`` (default: all). The prompt is
    A's user turn plus "Answer in B." worded in A; the answer is B's response.
    Only single-turn examples are used.
    """
    langs = sorted(per_language)
    targets = list(answer_languages or langs)
    by_id = {lang: {c.id: c for c in convs} for lang, convs in per_language.items()}
    shared = sorted(set.intersection(*(set(d) for d in by_id.values()))) if by_id else []
    rng = random.Random(seed)
    out = []
    for cid in shared:
        for a in langs:
            if a not in ANSWER_IN_TEMPLATES:
                continue
            ca = by_id[a][cid]
            if len(ca.messages) != 2 or ca.messages[0].role != "user":
                continue
            choices = [b for b in targets if b != a and b in by_id]
            for b in rng.sample(choices, min(per_prompt, len(choices))):
                cb = by_id[b][cid]
                if len(cb.messages) != 2:
                    continue
                prompt = f"{ca.messages[0].content}\n\n{answer_in(a, b)}"
                out.append(Conversation(
                    id=f"{cid}-{a}-{b}", language=a, source=source, tags=list(ca.tags) + ["cross-lingual"],
                    license=ca.license, messages=[Message("user", prompt, a), Message("assistant", cb.messages[1].content, b)]))
    return out


def coit_dataset(lang: str, *, seed: int = 0, include_general: bool = True) -> list[Conversation]:
    """x-LLaMA-style cross-lingual instruction data for one target language, from the embedded sets.

    Translation instructions in both directions (wording in English and
    ``lang``), the instructions translated into ``lang``, and cross-lingual
    tasks between English and ``lang`` (ask in one, answer in the other).
    """
    from polyinstruct.data import embedded

    out = translation_instructions(embedded.load_parallel_pairs(lang), lang, seed=seed)
    if include_general:
        per = {c: embedded.load_instructions(c) for c in ("en", lang)}
        out += per[lang]
        out += crosslingual_tasks(per, seed=seed)
    return out
