"""Per-language scores of a predictions file: language match, echo, chrF."""

from __future__ import annotations

import pytest

from polyinstruct.experiment.scoring import chrf, echoes_prompt, score_predictions
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


def test_scores_per_language(tmp_path):
    rows = [
        {"id": "1.fr", "language": "fr", "messages": [{"role": "user", "content": "Bonjour ?"}],
         "response": "Bonjour ? Bonjour ?", "reference": "Bonjour !"},
        {"id": "2.fr", "language": "fr", "messages": [{"role": "user", "content": "Ça va ?"}],
         "response": "Hello there", "reference": "Oui, merci."},
        {"id": "1.bn", "language": "bn", "messages": [{"role": "user", "content": "প্রশ্ন"}],
         "response": "", "reference": "উত্তর"},
    ]
    path = tmp_path / "p.jsonl"
    write_jsonl(path, rows)
    lid = _FixedLID({"Bonjour ? Bonjour ?": ("fr", 0.9), "Hello there": ("en", 0.9), "": ("und", 0.0)})
    out = {r["language"]: r for r in score_predictions(path, identifier=lid, seen_languages=["fr"])}
    assert out["fr"]["seen"] and not out["bn"]["seen"]
    assert out["fr"]["lang_match_rate"] == 0.5 and out["fr"]["prompt_echo_rate"] == 0.5
    assert out["bn"]["lang_match_rate"] == 0.0 and out["bn"]["lang_undetermined_rate"] == 1.0
    assert out["fr"]["chrf"] == pytest.approx(chrf(["Bonjour ? Bonjour ?", "Hello there"], ["Bonjour !", "Oui, merci."]))
    assert chrf(["Oui, merci."], ["Oui, merci."]) == pytest.approx(100.0)
