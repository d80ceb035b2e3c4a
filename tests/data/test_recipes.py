"""Budget arms (seed 1), cross-lingual data (seed 4) and the embedded-data loaders, on fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyinstruct.data import embedded
from polyinstruct.data.crosslingual import answer_in, crosslingual_tasks, translation_instructions
from polyinstruct.data.recipes import arm_totals, build_budget_arms
from polyinstruct.data.records import Conversation, Message
from polyinstruct.data.tokens import WordCounter

EMB = Path(__file__).parent / "fixtures" / "embedded"


def synthetic(langs=("en", "fr", "zh"), n=60):
    """Parallel sets whose lengths differ per language, like real translations."""
    out = {}
    for k, lang in enumerate(langs):
        out[lang] = [Conversation(id=f"i{i}", language=lang, messages=[
            Message("user", " ".join(["q"] * (3 + i % 5 + k))),
            Message("assistant", " ".join(["a"] * (5 + (i * 7) % 11 + 2 * k)))]) for i in range(n)]
    return out


def test_embedded_loaders_merge_parts_in_order():
    assert embedded.instruction_languages(EMB) == ["en", "fr"]
    fr = embedded.load_instructions("fr", EMB)
    assert [c.id for c in fr] == ["inst-001", "inst-002", "inst-003"]
    assert [c.id for c in embedded.load_instructions("en", EMB)] == [c.id for c in fr]
    assert embedded.eval_languages(EMB) == ["bn"]
    assert embedded.load_eval_prompts("bn", EMB)[0].language == "bn"
    assert embedded.load_parallel_pairs("fr", EMB)[1] == ("sent-002", "I like green tea.", "J'aime le thé vert.")
    with pytest.raises(Exception, match="no embedded parallel data for en-ru"):
        embedded.load_parallel_pairs("ru", EMB)


@pytest.mark.parametrize("by", ["tokens", "examples"])
def test_budget_arms_arithmetic(by):
    per = synthetic()
    arms = build_budget_arms(per, downsample_by=by, seed=3)
    assert set(arms) == {"mono-en", "mono-fr", "mono-zh", "multi", "multi-down", "en-only"}
    tot = arm_totals(arms)
    mono = [tot[f"mono-{lang}"] for lang in per]
    assert tot["multi"]["examples"] == 3 * mono[0]["examples"]
    assert tot["multi"]["length"] == sum(m["length"] for m in mono)
    assert sorted(c.id + c.language for c in arms["multi"]) == sorted(c.id + c.language for lang in per for c in per[lang])
    ref = tot["mono-en"]
    if by == "examples":
        assert tot["multi-down"]["examples"] == ref["examples"]
    else:
        assert abs(tot["multi-down"]["length"] - ref["length"]) <= 0.02 * ref["length"]
    assert {c.language for c in arms["multi-down"]} == {"en", "fr", "zh"}
    assert arms["en-only"] == per["en"]
    again = build_budget_arms(per, downsample_by=by, seed=3)
    assert [c.id for c in again["multi-down"]] == [c.id for c in arms["multi-down"]]
    assert [c.id for c in build_budget_arms(per, downsample_by=by, seed=4)["multi"]] != [c.id for c in arms["multi"]]
    table = arms.format_budget()
    assert "multi-down" in table and "words" in table
    assert arms.unit == "words" and arms.downsample_by == by
    assert table.splitlines()[-1].startswith("multi-down: " + ("random sample of 60 examples" if by == "examples"
                                                              else "random records up to"))


def test_budget_json_names_its_unit_and_rule_and_defaults_to_examples(tmp_path):
    import json

    from polyinstruct.data.recipes import write_budget_arms

    arms = build_budget_arms(synthetic(), seed=1)  # the default: study 1's random sample of examples
    rep = write_budget_arms(arms, tmp_path, seed=1)
    saved = json.loads((tmp_path / "budget.json").read_text())
    assert saved == rep
    assert saved["downsample_by"] == "examples" and saved["unit"] == "words"
    assert saved["downsample"].startswith("random sample of 60 examples (the size of en) from 180")
    assert all("tokens" not in row and "length" in row for row in saved["budget"])
    assert saved["totals"]["multi-down"]["examples"] == 60


def test_budget_recipe_cli_writes_arms(tmp_path, capsys):
    from polyinstruct.cli import main
    from polyinstruct.data.formats import write_records

    for lang, convs in synthetic(("en", "bg")).items():
        write_records(convs, tmp_path / f"{lang}.jsonl")
    rc = main(["data", "recipe", "budget", "--out", str(tmp_path / "arms"), "--languages", "en,bg",
               "--dataset-pattern", str(tmp_path / "{lang}.jsonl"), "--downsample-by", "examples"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "mono-bg" in out and "en-only" in out
    assert sorted(p.name for p in (tmp_path / "arms").iterdir()) == [
        "budget.json", "en-only.jsonl", "mono-bg.jsonl", "mono-en.jsonl", "multi-down.jsonl", "multi.jsonl"]
    assert len((tmp_path / "arms" / "multi.jsonl").read_text().splitlines()) == 120


def test_translation_instructions_both_directions_several_wordings():
    pairs = [(f"s{i}", f"English sentence {i}.", f"Phrase française {i}.") for i in range(40)]
    recs = translation_instructions(pairs, "fr", seed=1)
    assert len(recs) == 80
    to_fr = [r for r in recs if r.id.endswith("-en-fr")]
    from_fr = [r for r in recs if r.id.endswith("-fr-en")]
    assert len(to_fr) == len(from_fr) == 40
    r = to_fr[0]
    assert r.messages[1].content == "Phrase française 0." and r.response_language == "fr"
    assert "English sentence 0." in r.messages[0].content
    assert from_fr[0].messages[1].content == "English sentence 0." and from_fr[0].response_language == "en"
    assert {r.language for r in recs} == {"en", "fr"}  # instructions worded in both languages
    assert any("Traduisez" in r.messages[0].content or "traduire" in r.messages[0].content for r in recs)
    assert any("into French" in r.messages[0].content or "in French" in r.messages[0].content for r in recs)


def test_crosslingual_tasks_answer_in_the_asked_language():
    per = {lang: embedded.load_instructions(lang, EMB) for lang in ("en", "fr")}
    recs = crosslingual_tasks(per, seed=0)
    assert len(recs) == 6
    r = next(x for x in recs if x.id == "inst-001-fr-en")
    assert r.messages[0].content == "Citez trois couleurs primaires.\n\nRépondez en anglais."
    assert r.messages[1].content == "Red, yellow and blue."
    assert (r.language, r.response_language) == ("fr", "en")
    assert "cross-lingual" in r.tags


def test_answer_in_wording():
    assert answer_in("ru", "en") == "Ответьте на английском языке."
    assert answer_in("zh", "fr") == "请用法语回答。"
    assert answer_in("bg", "es") == "Отговорете на испански."


def test_word_counter_counts_cjk_characters():
    assert WordCounter()("Hello, world") == 2
    assert WordCounter()("天空为什么是蓝色的") == 9


def test_budget_languages_must_be_codes_not_paths(tmp_path, capsys):
    from polyinstruct.cli import main

    with pytest.raises(Exception, match="not a language code"):
        build_budget_arms({"../../x": synthetic(("en",))["en"]})
    assert main(["data", "recipe", "budget", "--out", str(tmp_path / "arms"), "--languages", "en,../../x"]) == 1
    assert "not a language code" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists() and not list(tmp_path.rglob("*.jsonl"))
