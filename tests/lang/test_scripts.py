"""The one script table, word/char counter and language table (polyinstruct.lang)."""

from __future__ import annotations

import pytest

from polyinstruct.data.records import Conversation, Message
from polyinstruct.data.stats import dataset_stats
from polyinstruct.data.tokens import make_counter
from polyinstruct.lang.languages import LANGUAGES, english_name, flores_code, get_language
from polyinstruct.lang.scripts import (COMPOSITE, SCRIPTS, WITHOUT_SPACES, count_chars, count_words, has_script,
                                       script_regex)

# Real text in the scripts of the evaluated languages, with the words the counter must give.
SAMPLES = [
    ("en", "Hello, world!", 2), ("ru", "Привет, мир!", 2), ("bg", "Здравей, свят", 2),
    ("el", "Γεια σου κόσμε", 3), ("ar", "مرحبا بالعالم", 2), ("he", "שלום עולם", 2),
    ("hi", "नमस्ते दुनिया", 2), ("bn", "ওহে বিশ্ব", 2), ("ta", "வணக்கம் உலகம்", 2),
    ("te", "హలో ప్రపంచం", 2), ("ko", "안녕하세요 세계", 2),                     # Korean: spaces between words
    ("zh", "你好世界", 4), ("zh", "你好，世界", 5),                             # Han: one word per character
    ("ja", "こんにちは世界", 7), ("ja", "カタカナ", 4),
    ("th", "สวัสดีชาวโลก", 12),                                                 # Thai: no spaces, marks count
    ("lo", "ສະບາຍດີ", 7), ("km", "សួស្តី", 6), ("my", "မင်္ဂလာပါ", 9),
    ("zh", "用GPU训练", 4), ("en", "", 0), ("en", "  \n\t", 0),
]


@pytest.mark.parametrize("lang,text,words", SAMPLES)
def test_word_counts_per_script(lang, text, words):
    assert count_words(text) == words
    assert count_chars(text) == sum(1 for ch in text if not ch.isspace())


def test_data_stats_budgets_and_fertility_count_words_the_same_way():
    """The issue's disagreement: data stats said 7 words for Korean and 1 for Thai."""
    wc = make_counter(None)
    assert wc.unit == "words"
    for _, text, words in SAMPLES:
        assert wc(text) == words
    from polyinstruct.analysis.fertility import count_words as fertility_words

    assert fertility_words is count_words
    convs = [Conversation(id=f"{lang}{i}", language=lang, messages=[Message(role="user", content=text),
                                                                    Message(role="assistant", content=text)])
             for i, (lang, text) in enumerate([("ko", "안녕하세요 세계"), ("th", "สวัสดีชาวโลก")])]
    stats = dataset_stats(convs)
    assert stats["per_language"]["ko"]["mean_prompt_length"] == 2.0
    assert stats["per_language"]["th"]["mean_completion_length"] == 12.0


def test_every_language_of_the_table_has_its_script_and_is_counted_by_its_spacing():
    """For every script the language table names: a sample letter of the script is recognised, and
    three space-separated two-letter words count 3 (spaced scripts) or 6 (scripts without spaces)."""
    for lang in LANGUAGES.values():
        parts = COMPOSITE.get(lang.script, (lang.script,))
        assert all(p in SCRIPTS for p in parts), f"{lang.code}: script {lang.script} not in the script table"
        lo = SCRIPTS[parts[-1]][0][0]
        letter = chr(lo + 1 if lang.script != "Latn" else ord("a"))
        assert has_script(letter, lang.script)
        text = " ".join([letter * 2] * 3)
        spaced = not any(p in WITHOUT_SPACES for p in parts)
        assert count_words(text) == (3 if spaced else 6), (lang.code, lang.script)


def test_scripts_do_not_overlap_and_cjk_is_han_kana_hangul():
    ranges = sorted((lo, hi, name) for name, rs in SCRIPTS.items() for lo, hi in rs)
    for (lo1, hi1, a), (lo2, hi2, b) in zip(ranges, ranges[1:]):
        assert hi1 < lo2, f"{a} and {b} overlap"
    cjk = script_regex("Han", "Hira", "Kana", "Hang")
    assert all(cjk.match(ch) for ch in "中文かなカナ한국\U00020000\uf900")
    assert not any(cjk.match(ch) for ch in "aЖ১ก")
    with pytest.raises(KeyError, match="unknown script"):
        script_regex("Klingon")


def test_language_table():
    assert flores_code("nb") == flores_code("no") == "nob_Latn"
    assert flores_code("zho") == "zho_Hans" and get_language("zh").script == "Hans"
    assert english_name("bn") == "Bengali" and english_name("xx-unknown") == "xx-unknown"
    assert flores_code("tlh") is None
    for code, lang in LANGUAGES.items():
        assert lang.code == code and len(lang.iso3) == 3 and lang.flores.split("_")[0].isalpha()
