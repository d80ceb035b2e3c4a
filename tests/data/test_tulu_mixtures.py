"""Tulu's mixtures resolve from the catalogue, offline, on small files in each dataset's official schema."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from polyinstruct.data import load_dataset
from polyinstruct.data.catalogue import load_catalogue
from polyinstruct.data.tokens import make_counter
from polyinstruct.errors import ConfigError

TULU = Path(__file__).parent / "fixtures" / "tulu"
CAT = [TULU / "catalogue.yaml"]  # the component names, pointed at the fixtures (a later file wins)


def test_builtin_mixtures_name_tulus_components_caps_and_chunking():
    cat = load_catalogue()
    human = cat.get("tulu-human").mixture
    assert human == [{"name": "flan-v2", "cap": 100000}, {"name": "flan-cot", "cap": 100000},
                     {"name": "dolly"}, {"name": "oasst1"}]
    gpt = cat.get("tulu-human-gpt").mixture
    assert gpt[:4] == human
    assert gpt[4:] == [{"name": "alpaca-gpt4"}, {"name": "code-alpaca"}, {"name": "sharegpt", "chunk_tokens": 2048}]


def test_human_mixture_reads_every_component_in_order():
    recs = list(load_dataset("tulu-human", catalogue=CAT))
    assert Counter(r.source for r in recs) == {"flan-v2": 6, "flan-cot": 5, "dolly": 3, "oasst1": 2}
    assert [r.source for r in recs] == sorted((r.source for r in recs), key=["flan-v2", "flan-cot", "dolly",
                                                                              "oasst1"].index)
    oasst = [r for r in recs if r.source == "oasst1"]
    assert [m.content for m in oasst[0].messages] == [  # the top-ranked path of the tree
        "Can you explain what a monad is?", "A monad wraps values and chains computations on them.",
        "Give an example.", "Maybe in Haskell: it chains steps that can fail."]
    assert oasst[1].language == "es"
    dolly = next(r for r in recs if r.source == "dolly")
    assert dolly.messages[0].input == "Virgin Australia commenced services on 31 August 2000 as Virgin Blue."
    assert dolly.tags == ["closed_qa"]
    assert len({(r.id, r.language) for r in recs}) == len(recs)


def test_human_gpt_mixture_chunks_sharegpt_to_2048_training_tokens(tiny_tokenizer):
    recs = list(load_dataset("tulu-human-gpt", catalogue=CAT, tokenizer=tiny_tokenizer))
    by = Counter(r.source for r in recs)
    assert by["alpaca-gpt4"] == 3 and by["code-alpaca"] == 3
    share = [r for r in recs if r.source == "sharegpt"]
    count = make_counter(tiny_tokenizer)
    long = [r for r in share if r.meta.get("chunked_from") == "long1"]
    assert len(long) >= 2 and [r.id for r in long] == [f"long1-c{k}" for k in range(len(long))]
    for r in long:
        assert sum(count(m.text) for m in r.messages) <= 2048
        assert r.messages[0].role == "user" and r.messages[-1].role == "assistant"
    # nothing lost: the chunks hold every round of the conversation, in order
    rounds = [m.content.split(":")[0] for r in long for m in r.messages if m.role == "user"]
    assert rounds == [f"Question {k}" for k in range(24)]
    assert [r.id for r in share if "chunked_from" not in r.meta] == ["short1"]
    gpt4 = next(r for r in recs if r.source == "alpaca-gpt4" and r.messages[0].input)
    assert (gpt4.messages[0].content, gpt4.messages[0].input) == ("Translate to French.", "Good night.")


def test_chunking_without_a_tokenizer_counts_words_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        share = [r for r in load_dataset("tulu-human-gpt", catalogue=CAT) if r.source == "sharegpt"]
    assert "not tokens" in caplog.text
    words = make_counter(None)
    assert all(sum(words(m.text) for m in r.messages) <= 2048 for r in share)


def test_cap_is_a_seeded_random_subset_in_file_order(tmp_path):
    cat = tmp_path / "mine.yaml"
    cat.write_text("datasets:\n  small-human:\n    mixture:\n      - {name: flan-v2, cap: 3}\n      - dolly\n"
                   "    seed: 7\n", encoding="utf-8")
    first = [r.id for r in load_dataset("small-human", catalogue=CAT + [cat])]
    again = [r.id for r in load_dataset("small-human", catalogue=CAT + [cat])]
    flan = [i for i in first if i.startswith("flan_v2-")]
    assert first == again and len(flan) == 3 and flan == sorted(flan, key=lambda i: int(i.split("-")[1]))
    assert len(first) == 3 + 3


@pytest.mark.parametrize("body,match", [
    ("  m:\n    mixture: [dolly, nope]\n", "component 'nope' of 'm' is not in the catalogue"),
    ("  m:\n    mixture: [dolly, m]\n", "contains itself"),
    ("  m:\n    mixture: [{name: dolly, cap: -1}]\n", "cap must be a positive integer"),
    ("  m:\n    mixture: [{name: dolly, weight: 2}]\n", "unknown field"),
])
def test_bad_mixtures_are_config_errors_naming_the_file(tmp_path, body, match):
    cat = tmp_path / "bad.yaml"
    cat.write_text("datasets:\n" + body, encoding="utf-8")
    with pytest.raises(ConfigError, match=match) as e:
        load_catalogue([cat])
    assert str(cat) in str(e.value)


def test_catalogue_has_the_alpaca_cot_table_with_every_column():
    cat = load_catalogue()
    public = [cat.get(n) for n in cat.names() if cat.get(n).file.endswith("public.yaml")]
    assert len(public) >= 30
    for e in public:
        assert e.hub and e.languages and e.task_type and e.generation and e.license and e.size, e.name
    for name in ("alpaca", "dolly", "oasst1", "sharegpt", "flan-v2", "flan-cot", "alpaca-gpt4", "code-alpaca",
                 "gpt4all", "natural-instructions", "xp3", "belle-1m-cn", "hh-rlhf", "ultrachat", "cot-collection"):
        assert name in cat


def test_flan_style_cot_templates_render_reasoning_then_answer():
    recs = list(load_dataset("cot-collection", catalogue=CAT))
    assert len(recs) == 2
    first = recs[0]
    assert "Tom has 3 apples and buys 2 more. How many apples does he have? {hint}" in first.messages[0].content
    answer = first.messages[1].content
    assert answer.index("He starts with 3 and adds 2, which makes 5.") < answer.index("5.", 40)
    assert first.tags == ["gsm8k"] and isinstance(first.meta["cot_template"], int)
    assert [r.to_dict() for r in load_dataset("cot-collection", catalogue=CAT)] == [r.to_dict() for r in recs]
