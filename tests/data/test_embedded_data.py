"""The embedded default data itself: complete, parallel, and the recipe arithmetic on it.

These run on the real files under polyinstruct/resources/data/ and skip (saying
why) only while those files are not written yet.
"""

from __future__ import annotations

import json

import pytest

from polyinstruct.cli import main
from polyinstruct.data import embedded
from polyinstruct.data.recipes import arm_totals, build_budget_arms

LANGS = list(embedded.INSTRUCTION_LANGUAGES)
EVAL_LANGS = list(embedded.EVAL_LANGUAGES)


def _need(what: str, present: list[str], wanted: list[str]) -> None:
    missing = [c for c in wanted if c not in present]
    if missing:
        pytest.skip(f"embedded {what} data not written yet for: {', '.join(missing)}")


@pytest.fixture(scope="module")
def instructions():
    _need("instruction", embedded.instruction_languages(), LANGS)
    return {lang: embedded.load_instructions(lang) for lang in LANGS}


def test_instructions_are_parallel_and_complete(instructions):
    ids = [c.id for c in instructions["en"]]
    assert len(ids) >= 200 and len(set(ids)) == len(ids)
    for lang, convs in instructions.items():
        assert [c.id for c in convs] == ids, f"{lang} ids differ from en"
        assert {c.language for c in convs} == {lang}
        assert all(c.messages[-1].role == "assistant" for c in convs)
    assert {c.id: c.tags for c in instructions["fr"]} == {c.id: c.tags for c in instructions["en"]}
    tags = {t for c in instructions["en"] for t in c.tags}
    assert len(tags) >= 5, f"too few task kinds: {sorted(tags)}"


def test_translations_are_not_copies_of_english(instructions):
    en = {c.id: c.messages[-1].content for c in instructions["en"]}
    for lang in LANGS[1:]:
        same = sum(c.messages[-1].content == en[c.id] for c in instructions[lang])
        assert same <= 0.1 * len(en), f"{lang}: {same} answers identical to English"


def test_eval_prompts_fifty_per_language():
    _need("evaluation", embedded.eval_languages(), EVAL_LANGS)
    ids = None
    for lang in EVAL_LANGS:
        convs = embedded.load_eval_prompts(lang)
        assert [c.id for c in convs] == [f"eval-{i:02d}" for i in range(1, 51)], lang
        assert all(c.language == lang and c.messages[-1].content.strip() for c in convs)
        ids = ids or [c.id for c in convs]


def test_parallel_pairs_two_hundred_per_language():
    _need("parallel", embedded.parallel_languages(), list(embedded.PARALLEL_LANGUAGES))
    for lang in embedded.PARALLEL_LANGUAGES:
        pairs = embedded.load_parallel_pairs(lang)
        assert len(pairs) >= 200 and len({p[0] for p in pairs}) == len(pairs)
        assert sum(p[1] == p[2] for p in pairs) <= 5, f"en-{lang}: untranslated pairs"


@pytest.mark.parametrize("by", ["tokens", "examples"])
def test_budget_arithmetic_on_embedded_data(instructions, by):
    arms = build_budget_arms(instructions, downsample_by=by, seed=0)
    tot = arm_totals(arms)
    n = len(LANGS)
    mono_length = [tot[f"mono-{lang}"]["length"] for lang in LANGS]
    assert tot["multi"]["examples"] == n * tot["mono-en"]["examples"]
    assert tot["multi"]["length"] == sum(mono_length)  # = N x the mean monolingual arm
    ref = tot["mono-en"]
    if by == "tokens":
        assert abs(tot["multi-down"]["length"] - ref["length"]) <= 0.02 * ref["length"]
    else:
        assert tot["multi-down"]["examples"] == ref["examples"]
    assert tot["en-only"] == ref
    assert {c.language for c in arms["multi-down"]} == set(LANGS)


def test_stats_cli_on_embedded_data(instructions, capsys):
    assert main(["data", "stats", "polyinstruct-instruct", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "#instances" in out[1] and "mean rounds" in out[1] and "mean prompt (words)" in out[1]
    rows = {line.split()[0]: line.split() for line in out[3:-1]}
    for lang in LANGS:
        assert rows[lang][1] == str(len(instructions[lang]))
    stats = json.loads(out[-1])
    assert set(stats["per_language"]) == set(LANGS)
    assert stats["overall"]["instances"] == sum(len(v) for v in instructions.values())


def test_embedded_sets_load_by_catalogue_name():
    from polyinstruct.data import load_dataset

    _need("instruction", embedded.instruction_languages(), ["fr"])
    assert len(list(load_dataset("polyinstruct-instruct-fr"))) == len(embedded.load_instructions("fr"))
    _need("parallel", embedded.parallel_languages(), ["zh"])
    recs = list(load_dataset("polyinstruct-parallel-en-zh"))
    assert len(recs) == 2 * len(embedded.load_parallel_pairs("zh"))
    assert {r.response_language for r in recs} == {"en", "zh"}


def test_crosslingual_recipe_cli_on_embedded_data(tmp_path, capsys):
    _need("instruction", embedded.instruction_languages(), ["en", "zh"])
    _need("parallel", embedded.parallel_languages(), ["zh"])
    out = tmp_path / "xzh.jsonl"
    assert main(["data", "recipe", "crosslingual", "--lang", "zh", "--out", str(out)]) == 0
    recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    n_pairs, n_inst = len(embedded.load_parallel_pairs("zh")), len(embedded.load_instructions("zh"))
    assert len(recs) == 2 * n_pairs + n_inst + 2 * n_inst
    cross = [r for r in recs if "cross-lingual" in r.get("tags", [])]
    assert all(r["messages"][1]["language"] != r["language"] for r in cross)
