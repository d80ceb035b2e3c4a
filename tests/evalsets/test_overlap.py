"""No evaluation prompt repeats (or nearly repeats) a training instruction, in any language."""

from __future__ import annotations

import json
import shutil

import pytest

from polyinstruct.data import embedded
from polyinstruct.evalsets.overlap import check_embedded, compare, ngrams, normalize_text

# The leaks an audit found in an earlier version of the embedded data (eval prompt, training instruction).
AUDITED_LEAKS = [
    ("Why is the sky blue?", "Why is the sky blue?"),
    ("What is the difference between a virus and a bacterium?", "What's the difference between a virus and a bacterium?"),
    ("Write a short product description for a reusable stainless steel water bottle.",
     "Write a short product description (about 60 words) for a stainless-steel reusable water bottle that keeps "
     "drinks cold for 24 hours."),
    ("How does a vaccine work?", "How do vaccines actually work?"),
    ("How do I boil an egg so that the yolk stays runny?",
     "How long should I boil an egg for a runny yolk versus a fully hard-boiled one?"),
    ("What is inflation, and why does it happen?",
     "In simple terms, what is inflation and why does it matter for my savings?"),
    ("Write a short, polite email to my landlord asking him to repair the leaking kitchen tap.",
     "Write a short, polite message to my landlord about a leaking pipe under the kitchen sink."),
]


@pytest.fixture(scope="module")
def training_en():
    return [(c.id, "\n".join(m.content for m in c.messages if m.role == "user"))
            for c in embedded.load_instructions("en")]


def test_normalisation_and_cjk_ngrams():
    assert normalize_text("  Why is the SKY blue?! ") == "why is the sky blue"
    assert ngrams("天空为什么是蓝色的？") == {"天空为", "空为什", "为什么", "什么是", "么是蓝", "是蓝色", "蓝色的"}
    assert ("sky", "blue") in ngrams("Why is the sky blue?")


def test_audited_leaks_are_flagged_among_the_real_training_data(training_en):
    """Each leak is planted among the 200 real English instructions (which set the IDF weights)."""
    for k, (ev, tr) in enumerate(AUDITED_LEAKS):
        pairs = compare("en", [("e", ev)], [*training_en, ("planted", tr)])
        planted = [p for p in pairs if p.train_id == "planted"]
        assert planted and planted[0].flagged, (ev, [(p.train_id, p.similarity) for p in pairs[:3]])


def test_chinese_near_duplicate_is_flagged_with_character_ngrams():
    train = [(c.id, c.messages[0].content) for c in embedded.load_instructions("zh")]
    pairs = compare("zh", [("e", "疫苗是怎么起作用的？")], [*train, ("planted", "疫苗到底是怎么起作用的？")])
    assert pairs[0].train_id == "planted" and pairs[0].flagged


def test_frame_only_similarity_is_not_flagged(training_en):
    pairs = compare("en", [("e", "What is the difference between a comet and an asteroid?")], training_en)
    assert not any(p.flagged for p in pairs), [(p.train_id, p.similarity) for p in pairs[:3]]


@pytest.mark.slow
def test_shipped_eval_prompts_do_not_overlap_training_data():
    res = check_embedded()
    assert set(res["languages"]) == {"en", "fr", "es", "ru", "bg", "zh", "bn", "no"}
    assert res["flagged"] == [], [(p.language, p.eval_id, p.train_id, p.similarity, p.containment)
                                  for p in res["flagged"]]


@pytest.mark.slow
def test_planted_duplicate_in_every_language_fails_the_check(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(embedded.DATA_DIR, data)
    for lang in embedded.instruction_languages(data):
        inst = embedded.load_instructions(lang, data)[7]
        path = data / "eval_prompts" / f"{lang}.jsonl"
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
        rows[20]["messages"][0]["content"] = inst.messages[0].content.upper() + " "
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    res = check_embedded(data)
    hits = {(p.language, p.eval_id, p.train_id) for p in res["flagged"] if p.exact}
    assert {lang for lang, _, _ in hits} == set(embedded.instruction_languages(data))
    assert all(e == "eval-21" and t == "inst-008" for _, e, t in hits), hits
