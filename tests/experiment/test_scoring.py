"""Per-language scores of a predictions file: language match (echoes excluded), echo, undetermined, chrF."""

from __future__ import annotations

import pytest

from polyinstruct.experiment.scoring import chrf, echo_coverage, echoes_prompt, score_predictions
from polyinstruct.fileio import write_jsonl


class _FixedLID:
    """Identifier stub answering from a table: the scoring arithmetic is what is tested here."""

    def __init__(self, table):
        self.table = table

    def identify(self, texts):
        return [self.table[t] for t in texts]


def test_echo_detects_a_repeated_question_not_an_answer():
    q = "Why is the sky blue?\nExplain briefly."
    assert echoes_prompt("why is the sky blue? explain briefly.\n<|assistant|>\nWhy is", q)
    assert not echoes_prompt("Because air scatters blue light more than red light.", q)


def test_full_partial_and_looping_echoes():
    q = "How do I keep fresh herbs like basil and parsley from wilting so quickly?"
    assert echo_coverage(q, q) == 1.0
    loop = f"{q}\n<|assistant|>\n{q}\n<|user|>\n{q}"
    assert echoes_prompt(loop, q)  # a base model looping through chat markers
    partial = "Keep fresh herbs like basil and parsley from wilting so quickly, please."
    assert echoes_prompt(partial, q)  # mostly the question's words in its order
    restated = ("Fresh herbs like basil and parsley wilt quickly. Trim the stems, stand them in a glass of water, "
                "keep basil out of the fridge and cover parsley loosely with a bag.")
    assert not echoes_prompt(restated, q)  # restating part of the question before answering is fine
    assert not echoes_prompt("Stand them in water like cut flowers.", q)


def test_short_cjk_prompts_are_compared_character_by_character():
    q = "猫为什么会发出呼噜声？"
    assert echoes_prompt("猫为什么会发出呼噜声？猫为什么会发出呼噜声？", q)
    assert echoes_prompt("为什么会发出呼噜声", q)  # partial, no spaces anywhere
    assert not echoes_prompt("猫发出呼噜声，是因为喉部的肌肉快速收缩，让声带在吸气和呼气时振动。", q)
    assert echoes_prompt("你好吗？", "你好吗？") and not echoes_prompt("我很好，谢谢。", "你好吗？")


def test_scores_per_language(tmp_path):
    rows = [
        {"id": "1.fr", "language": "fr", "messages": [{"role": "user", "content": "Bonjour ?"}],
         "response": "Bonjour ? Bonjour ?", "reference": "Bonjour !"},
        {"id": "2.fr", "language": "fr", "messages": [{"role": "user", "content": "Ça va ?"}],
         "response": "Hello there", "reference": "Oui, merci."},
        {"id": "3.fr", "language": "fr", "messages": [{"role": "user", "content": "Pourquoi le ciel est-il bleu ?"}],
         "response": "L'air diffuse davantage la lumière bleue.", "reference": "La diffusion."},
        {"id": "4.fr", "language": "fr", "messages": [{"role": "user", "content": "Et alors ?"}],
         "response": "42", "reference": "Rien."},
        {"id": "1.bn", "language": "bn", "messages": [{"role": "user", "content": "প্রশ্ন"}],
         "response": "", "reference": "উত্তর"},
    ]
    path = tmp_path / "p.jsonl"
    write_jsonl(path, rows)
    lid = _FixedLID({"Bonjour ? Bonjour ?": ("fr", 0.9), "Hello there": ("en", 0.9), "": ("und", 0.0),
                     "L'air diffuse davantage la lumière bleue.": ("fr", 0.99), "42": ("und", 0.0)})
    out = {r["language"]: r for r in score_predictions(path, identifier=lid, seen_languages=["fr"])}
    fr = out["fr"]
    assert fr["seen"] and not out["bn"]["seen"]
    # the echo is in French by language ID but not an answer: only 3.fr counts
    assert fr["lang_match_rate"] == 0.25 and fr["lang_match_raw_rate"] == 0.5
    assert fr["prompt_echo_rate"] == 0.25 and fr["lang_mismatch_rate"] == 0.25
    assert fr["lang_undetermined_rate"] == 0.25 and fr["detected_languages"] == {"fr": 2, "en": 1, "und": 1}
    assert [i["lang_match"] for i in fr["items"]] == [0, 0, 1, 0]
    assert sum(i["lang_match"] for i in fr["items"]) / fr["n"] == fr["lang_match_rate"]
    assert out["bn"]["lang_match_rate"] == 0.0 and out["bn"]["lang_undetermined_rate"] == 1.0
    assert fr["chrf"] == pytest.approx(chrf([r["response"] for r in rows[:4]], [r["reference"] for r in rows[:4]]))
    assert chrf(["Oui, merci."], ["Oui, merci."]) == pytest.approx(100.0)
