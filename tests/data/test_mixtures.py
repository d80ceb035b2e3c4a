"""Mixtures, chunking, cleaning and statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyinstruct.cli import main
from polyinstruct.data.chunking import chunk_conversation
from polyinstruct.data.cleaning import CleanReport, deduplicate, language_filter, length_filter
from polyinstruct.data.formats import read_records, write_records
from polyinstruct.data.mixtures import mix
from polyinstruct.data.records import Conversation, Message
from polyinstruct.data.stats import dataset_stats

FIX = Path(__file__).parent / "fixtures"


def conv(i, lang, words=4, src="s"):
    return Conversation(id=f"{src}{i}", language=lang, source=src, messages=[
        Message("user", f"question {i} " + "w " * words), Message("assistant", f"answer {i} " + "x " * words)])


@pytest.fixture
def sources(tmp_path):
    paths = {}
    for name, lang, n, words in (("big", "en", 300, 4), ("small", "fr", 50, 10), ("zh", "zh", 20, 2)):
        paths[name] = tmp_path / f"{name}.jsonl"
        write_records([conv(i, lang, words, name) for i in range(n)], paths[name])
    return paths


def read_out(d):
    return [json.loads(x) for x in (Path(d) / "data.jsonl").read_text(encoding="utf-8").splitlines()]


def test_concat_with_cap_is_reproducible_and_manifested(sources, tmp_path):
    comps = [{"name": str(sources["big"]), "cap": 100}, str(sources["small"])]
    m1 = mix(comps, tmp_path / "m1", seed=7)
    m2 = mix(comps, tmp_path / "m2", seed=7)
    m3 = mix(comps, tmp_path / "m3", seed=8)
    assert m1["output"]["records"] == 150
    assert [s["selected"] for s in m1["sources"]] == [100, 50]
    assert m1["output"]["sha256"] == m2["output"]["sha256"] != m3["output"]["sha256"]
    assert m1["sources"][0]["sha256"] == m3["sources"][0]["sha256"]  # same source content
    man = json.loads((tmp_path / "m1" / "manifest.json").read_text())
    assert man["seed"] == 7 and man["languages"] == {"en": 100, "fr": 50}
    ids = [r["id"] for r in read_out(tmp_path / "m1")]
    assert len(set(ids[:100])) == 100 and ids[100:] == [f"small{i}" for i in range(50)]


def test_weighted_by_examples_upsamples_small_sources(sources, tmp_path):
    m = mix([{"name": str(sources["big"]), "weight": 1}, {"name": str(sources["small"]), "weight": 3}],
            tmp_path / "w", strategy="examples", total=200, seed=0)
    assert [s["selected"] for s in m["sources"]] == [50, 150]
    assert m["sources"][1]["unique_selected"] == 50  # 150 from 50: three copies each


def test_weighted_by_tokens(sources, tmp_path):
    m = mix([str(sources["big"]), str(sources["small"])], tmp_path / "t", strategy="tokens", total=2000, seed=0)
    for s in m["sources"]:
        assert 1000 - 30 <= s["tokens"] <= 1000


def test_language_temperature_flattens_the_distribution(sources, tmp_path):
    comps = [str(p) for p in sources.values()]
    prop = mix(comps, tmp_path / "p", strategy="languages", total=370, temperature=1.0, seed=0)["languages"]
    flat = mix(comps, tmp_path / "f", strategy="languages", total=370, temperature=100.0, seed=0)["languages"]
    assert prop == {"en": 300, "fr": 50, "zh": 20}
    assert max(flat.values()) - min(flat.values()) <= 6 and sum(flat.values()) == 370


def test_mix_cli_from_yaml(sources, tmp_path, capsys):
    cfg = tmp_path / "mix.yaml"
    cfg.write_text(f"strategy: examples\ntotal: 60\nseed: 1\ndatasets:\n  - name: {sources['big']}\n"
                   f"  - name: {sources['zh']}\n    weight: 2\n", encoding="utf-8")
    assert main(["data", "mix", str(cfg), str(tmp_path / "o"), "total=90"]) == 0
    assert len(read_out(tmp_path / "o")) == 90
    cfg.write_text("strategy: examples\ntotl: 5\ndatasets: [a]\n", encoding="utf-8")
    assert main(["data", "mix", str(cfg), str(tmp_path / "o2")]) == 1
    assert "Did you mean: total" in capsys.readouterr().err


def test_chunking_starts_every_chunk_with_a_user_turn():
    msgs = [Message("system", "be brief")]
    for _ in range(6):
        msgs += [Message("user", "u " * 10), Message("assistant", "a " * 20)]
    c = Conversation(id="long", messages=msgs)
    chunks = chunk_conversation(c, max_tokens=70)
    assert [x.id for x in chunks] == ["long-c0", "long-c1", "long-c2"]
    for x in chunks:
        assert x.messages[0].role == "system" and x.messages[1].role == "user" and x.messages[-1].role == "assistant"
        assert sum(len(m.content.split()) for m in x.messages) <= 70
    assert sum(len(x.messages) - 1 for x in chunks) == 12
    assert chunk_conversation(c, max_tokens=10_000) == [c]


def test_chunk_cli_on_sharegpt(tmp_path, capsys):
    assert main(["data", "chunk", str(FIX / "sharegpt.jsonl"), str(tmp_path / "c.jsonl"), "--max-tokens", "12"]) == 0
    out = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == ["sg-1-c0", "sg-1-c1", "sg-2"]
    assert [m["role"] for m in out[1]["messages"]] == ["system", "user", "assistant"]


def test_dedup_exact_and_normalized():
    a = conv(1, "en")
    b = conv(1, "en")
    b.id = "other"
    c = Conversation(id="c", messages=[Message("user", "QUESTION 1   w w w w!"), Message("assistant", a.messages[1].content)])
    rep = CleanReport()
    assert [x.id for x in deduplicate([a, b, c], "exact", rep)] == ["s1", "c"]
    assert rep.removed == {"duplicate-exact": 1}
    assert [x.id for x in deduplicate([a, b, c], "normalized")] == ["s1"]


def test_length_filter_counts_reasons():
    recs = [conv(i, "en", words=i) for i in range(10)]
    rep = CleanReport()
    kept = list(length_filter(recs, max_total=12, report=rep))
    assert [len(x.messages[0].content.split()) + len(x.messages[1].content.split()) for x in kept] == [4, 6, 8, 10, 12]
    assert rep.kept == 5 and rep.removed == {"too-long": 5}


def test_language_filter_plugs_in_an_identifier():
    class Fake:
        def identify(self, texts):
            return [("fr" if "bonjour" in t else "en", 0.9) for t in texts]

    good = Conversation(id="g", language="fr", messages=[Message("user", "salut"), Message("assistant", "bonjour")])
    bad = Conversation(id="b", language="fr", messages=[Message("user", "salut"), Message("assistant", "hello")])
    rep = CleanReport()
    assert [x.id for x in language_filter([good, bad], Fake(), report=rep)] == ["g"]
    assert rep.removed == {"wrong-language": 1}


def _stats_records():
    return list(read_records(FIX / "sharegpt.jsonl")) + list(read_records(FIX / "oasst1.jsonl"))


def test_stats_columns_per_language():
    s = dataset_stats(_stats_records())
    assert s["unit"] == "words"
    assert s["overall"]["instances"] == 4
    assert s["per_language"]["es"] == {"instances": 1, "mean_rounds": 1.0, "mean_prompt_length": 4.0,
                                       "mean_completion_length": 6.0}
    assert s["per_language"]["unknown"]["mean_rounds"] == 1.5  # sg-1 has 2 rounds, sg-2 has 1


@pytest.mark.slow  # builds the session's tiny tokenizer (~10 s) when no other test did
def test_stats_with_a_tokenizer_counts_tokens(tiny_tokenizer):
    s = dataset_stats(_stats_records())
    t = dataset_stats(_stats_records(), tiny_tokenizer)
    assert t["unit"] == "tokens" and t["overall"]["mean_prompt_length"] > s["overall"]["mean_prompt_length"]
