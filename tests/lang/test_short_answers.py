"""Language ID on short answers (issue 22, item 3): letters counted with their marks, alphabet
facts inside ru/uk/be and no/da/sv, and study 1's top-label rule for the strict penalty."""

from __future__ import annotations

import pytest

from polyinstruct.lang.identify import LanguageIdentifier, letter_count, load_identifier
from polyinstruct.lang.letters import has_letters, letters_and_marks
from polyinstruct.lang.refine import alphabet_fix, refine


def test_letters_count_with_their_marks():
    # ন া ম া ক ড ় স া প ো ক া ন য ় : 8 letters and 8 marks (the old counter saw 8 and said und)
    assert letters_and_marks("না, মাকড়সা পোকা নয়।") == 16
    assert letter_count("না, মাকড়সা পোকা নয়।") >= 10
    assert letter_count("नमस्ते दोस्त") == 11 and letter_count("Oslo.") == 4
    assert has_letters("Oslo.") and not has_letters("42 + 7 = 49 🙂") and not has_letters("")


@pytest.fixture(scope="module")
def ensemble():
    pytest.importorskip("lingua")
    return load_identifier("fasttext-lingua")


@pytest.fixture(scope="module")
def lite():
    return load_identifier("fasttext-lite")


def test_a_three_word_bengali_answer_is_bengali(ensemble, lite):
    for ident in (ensemble, lite):
        assert ident.identify_one("না, মাকড়সা পোকা নয়।")[0] == "bn"


@pytest.mark.parametrize("label,text,expected", [
    ("uk", "Мы едем домой.", "ru"),             # ы: not Ukrainian
    ("uk", "Это мой дом.", "ru"),               # э
    ("be", "Он съел яблоко.", "ru"),            # ъ: not Belarusian
    ("ru", "Я її люблю.", "uk"),                # ї: not Russian
    ("ru", "Беларусь — краіна ў Еўропе.", "be"),  # ў
    ("uk", "Я люблю свою маму.", "uk"),         # valid Ukrainian: left alone
    ("no", "Jag är här.", "sv"),                # ä: Swedish, not Norwegian
    ("da", "Hon läser en bok.", "sv"),
    ("sv", "Jeg kan ikke lide kaffe, tak for øl.", "da"),  # ø: not Swedish; Danish markers (tak)
    ("sv", "Jeg liker øl.", "no"),              # no marker either way: Norwegian
    ("bg", "Мы едем домой.", "bg"),             # outside these groups: untouched here
])
def test_alphabet_facts_inside_the_confusable_groups(label, text, expected):
    assert alphabet_fix(label, text) == expected
    assert refine(label, text) == expected or label == "bg"


def test_ensemble_follows_the_alphabet_after_lingua(ensemble, monkeypatch):
    """lingua (or OpenLID) may call a short Russian sentence Ukrainian; letters Ukrainian lacks
    decide within the group."""

    class Votes:
        def __init__(self, code, value):
            from lingua import IsoCode639_1, Language

            self.language = Language.from_iso_code_639_1(getattr(IsoCode639_1, code))
            self.value = value

    class Detector:
        def compute_language_confidence_values(self, text):
            return [Votes("UK", 0.9), Votes("RU", 0.1)]

    monkeypatch.setattr(ensemble, "_detector", lambda group: Detector())
    code, conf = ensemble.identify_one("Мы едем домой сегодня вечером.")
    assert code == "ru" and conf > 0.5


def test_top_label_rule_names_a_language_for_any_text_with_letters(ensemble):
    top = ensemble.with_policy(top_label=True)
    assert ensemble.identify_one("Det er Oslo.")[0] == "und"     # too short for the identifier's own policy
    assert top.identify_one("Det er Oslo.")[0] == "no"
    assert top.identify_one("Oslo.")[0] != "und"                 # a language, right or wrong
    for text in ("42", "3.14 + 2", "🙂🙂", "```\nprint(1)\n```", ""):
        assert top.identify_one(text) == ("und", 0.0), text  # no letters: undetermined
    assert ensemble.policy.top_label is False and top._ft is ensemble._ft  # models shared, policy separate


def test_strict_penalty_uses_study_1_top_label(ensemble):
    from polyinstruct.judge.scores import apply_language_penalty

    answers = ["Det er Oslo.", "Oslo.", "42", "Det er Oslo."]
    rows = [{"language": "no", "score": 3}, {"language": "no", "score": 3}, {"language": "no", "score": 3},
            {"language": "no", "score": 3}]
    strict = apply_language_penalty([dict(r) for r in rows[:3]], answers[:3], ensemble, language_policy="strict")
    assert strict[0]["lid_language"] == "no" and strict[0]["final_score"] == 3.0  # was und -> 0
    assert strict[2]["lid_language"] == "und" and strict[2]["final_score"] == 0.0  # no letters: still 0
    lenient = apply_language_penalty([dict(r) for r in rows[:1]], answers[:1], ensemble, language_policy="lenient")
    assert lenient[0]["lid_language"] == "und" and lenient[0]["final_score"] == 3.0


def test_with_policy_keeps_a_base_identifier_usable():
    class Fixed(LanguageIdentifier):
        name = "fixed"

        def _predict(self, text):
            return [("fr", 0.3), ("en", 0.2)]

    ident = Fixed()
    assert ident.identify_one("Bonjour à tous.") == ("und", 0.3)              # below the threshold
    assert ident.with_policy(top_label=True).identify_one("Bonjour à tous.") == ("fr", 0.3)
