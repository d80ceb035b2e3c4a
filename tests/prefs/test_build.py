"""``data prefs``: sampled answers scored by language ID, echo detection and chrF, paired with reasons."""

from __future__ import annotations

import json

import pytest

from polyinstruct.infer.backend import Generation
from polyinstruct.prefs.build import make_prefs

PROMPTS = [
    ("fr", "Expliquez pourquoi le ciel est bleu pendant la journée.",
     "Le ciel est bleu parce que l'air diffuse davantage la lumière bleue du soleil."),
    ("es", "¿Cuál es la capital de España y por qué es importante?",
     "La capital de España es Madrid, el centro político y económico del país."),
    ("de", "Warum ist der Himmel am Tag blau?",
     "Der Himmel ist blau, weil die Luft das blaue Sonnenlicht stärker streut als das rote."),
]
ENGLISH = "The sky is blue because air scatters blue sunlight more strongly than the other colours of light."


class Scripted:
    """Answers by prompt: the question echoed, an English answer, and (French only) a French answer."""

    name = "scripted"
    model = "scripted"

    def __init__(self):
        self.calls = 0

    def generate(self, conversations, params):
        self.calls += 1
        out = []
        for conv in conversations:
            q = conv[-1]["content"]
            if q.startswith("Expliquez"):
                texts = {0: q, 1: ENGLISH, 2: "La lumière bleue est diffusée par l'air, donc le ciel paraît bleu."}
            else:
                texts = {0: q, 1: ENGLISH, 2: ""}
            out.append(Generation(texts[self.calls_for(conv)], completion_tokens=5))
        return out

    def calls_for(self, conv):  # sample index from the order predict sends: the scripted answers cycle
        self._n = getattr(self, "_n", -1) + 1
        return self._n % 3


@pytest.fixture
def prompts_file(tmp_path):
    p = tmp_path / "prompts.jsonl"
    p.write_text("".join(json.dumps({"id": f"q{i}", "language": lang, "messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]}, ensure_ascii=False) + "\n"
        for i, (lang, q, a) in enumerate(PROMPTS)), encoding="utf-8")
    return p


def _pairs(out):
    return [json.loads(x) for x in (out / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]


def test_pairs_prefer_the_prompt_language_and_record_reasons(prompts_file, tmp_path):
    out = tmp_path / "prefs"
    rep = make_prefs(prompts_file, "scripted", out, k=3, generator=Scripted(), lid="fasttext-lingua",
                     reference_as_chosen=True)
    pairs = {p["id"]: p for p in _pairs(out)}
    assert rep["prompts"] == 3 and rep["pairs"] == len(pairs) == 3
    for pid, p in pairs.items():
        assert p["chosen"]["language"] == p["language"]
        assert p["meta"]["scores"]["chosen"]["echo"] is False
        assert p["meta"]["reasons"][0] == "rejected:other-language"  # the English answer is the most instructive
        assert p["rejected"]["content"] == ENGLISH and p["rejected"]["language"] == "en"
    # French: a sampled French answer exists, so the reference stays out; the others fall back to it
    assert pairs["q0"]["meta"]["reasons"][-1] == "chosen:sample"
    assert pairs["q1"]["meta"]["reasons"][-1] == "chosen:reference"
    assert pairs["q1"]["chosen"]["content"] == PROMPTS[1][2]
    assert rep["candidates"]["echo"] >= 3 and rep["candidates"]["empty"] >= 1
    # resumable: every sample is on disk, so a second run generates nothing
    class Refuses(Scripted):
        def generate(self, conversations, params):
            raise AssertionError("nothing left to generate")

    again = make_prefs(prompts_file, "scripted", out, k=3, generator=Refuses(), lid="fasttext-lingua",
                       reference_as_chosen=True)
    assert again["pairs"] == 3


def test_without_a_good_answer_the_prompt_is_skipped_and_counted(prompts_file, tmp_path):
    out = tmp_path / "prefs"
    rep = make_prefs(prompts_file, "scripted", out, k=3, generator=Scripted(), lid="fasttext-lingua")
    assert rep["pairs"] == 1 and rep["skipped"] == {"no-good-answer": 2}
    assert _pairs(out)[0]["id"] == "q0"


def test_rejected_side_from_another_arm(prompts_file, tmp_path):
    other = tmp_path / "enonly.jsonl"
    other.write_text("".join(json.dumps({"id": f"q{i}", "response": ENGLISH}) + "\n" for i in range(3)))
    out = tmp_path / "prefs"
    rep = make_prefs(prompts_file, "none", out, k=0, lid="fasttext-lingua", rejected_from=str(other),
                     reference_as_chosen=True)
    pairs = _pairs(out)
    assert rep["pairs"] == 3 and all(p["meta"]["scores"]["rejected"]["origin"] == "other" for p in pairs)
    assert all(p["chosen"]["content"] == a for p, (_, _, a) in zip(pairs, PROMPTS))
