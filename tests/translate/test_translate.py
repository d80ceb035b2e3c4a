"""`polyinstruct data translate`: protected spans, gates, cache, resume, catalogue (offline).

The HTTP engine talks to a scripted OpenAI-compatible server on loopback that
answers with the embedded reference translations (tests/translate/helpers.py);
the causal-LM engine runs the tiny random model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polyinstruct.cli import main
from polyinstruct.data.catalogue import load_catalogue
from polyinstruct.errors import DataError
from polyinstruct.fileio import iter_jsonl, write_jsonl
from polyinstruct.translate import protect
from polyinstruct.translate.engines import LLMEngine, Seq2SeqEngine, load_engine
from polyinstruct.translate.gates import GateConfig
from polyinstruct.translate.languages import m2m_code, marian_tokens, nllb_code
from polyinstruct.translate.run import translate_dataset
from tests.judge.fake_server import ScriptedServer
from tests.translate.helpers import ScriptedTranslator, english_sentences, references

ROOT = Path(__file__).resolve().parents[2]
CODE = "```python\nprint('Translate me not')  # a comment in code\n```"


def conv(i: str, user: str, assistant: str) -> dict:
    return {"id": i, "language": "en", "source": "toy", "license": "CC0",
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def http_engine(server, **kw):
    opts = dict(base_url=server.base_url, concurrency=2, max_retries=0, timeout=10.0)
    opts.update(kw)
    return load_engine("openai", "mt-x", **opts)


# ------------------------------------------------------------------------------------ protected spans
def test_segment_keeps_code_urls_placeholders_and_markdown_out_of_the_engine():
    text = ("# A heading to translate\n"
            "Run `pip install x` then open https://example.com/a?b=1. Hello {name}, use %s and $HOME.\n"
            "- first item\n"
            "2. second item with <b>bold</b>\n\n"
            f"{CODE}\n"
            "| a cell | another cell |\n|---|---|\n"
            "> a quote")
    seg = protect.segment(text)
    units = [u.text for u in seg.units]
    assert units == ["A heading to translate",
                     "Run <x1/> then open <x2/>. Hello <x3/>, use <x4/> and <x5/>.",
                     "first item", "second item with <x1/>bold<x2/>",
                     "a cell", "another cell", "a quote"]
    assert seg.units[1].spans == ["`pip install x`", "https://example.com/a?b=1", "{name}", "%s", "$HOME"]
    # Nothing of the code block reaches the engine; restoring every unit gives the text back exactly.
    assert not any("Translate me not" in u for u in units)
    assert protect.join(seg, [protect.restore(u, u.text) for u in seg.units]) == text
    # A "translation" of every unit keeps the structure around it.
    out = protect.join(seg, [protect.restore(u, u.text.replace("item", "élément")) for u in seg.units])
    assert "- first élément\n2. second élément with <b>bold</b>\n\n" + CODE in out


def test_restore_names_a_lost_or_repeated_tag_and_tolerates_spacing():
    unit = protect.segment("See `a` and `b` now please").units[0]
    assert protect.restore(unit, "Voir < x2 /> et <x1/> maintenant") == "Voir `b` et `a` maintenant"
    with pytest.raises(protect.SpanError, match="lost '`b`'"):
        protect.restore(unit, "Voir <x1/> maintenant")
    with pytest.raises(protect.SpanError, match="repeated <x1/>"):
        protect.restore(unit, "<x1/> <x1/> <x2/>")
    assert protect.digit_runs("It costs 3.5 euros, `x = 99`") == protect.digit_runs("Il coûte 3,5 euros")


def test_language_code_conventions_of_each_model_family():
    assert nllb_code("fr") == "fra_Latn" and nllb_code("zh-CN") == "zho_Hans" and nllb_code("no") == "nob_Latn"
    assert nllb_code("fra_Latn") == "fra_Latn"
    assert m2m_code("fr") == "fr" and m2m_code("nb") == "no" and m2m_code("zho") == "zh"
    assert marian_tokens("fr")[:2] == [">>fra<<", ">>fr<<"]

    class Tok:  # the attributes the conventions use, as NLLB / M2M-100 / Marian tokenizers expose them
        unk_token_id = 0
        src_lang = None

        def get_vocab(self):
            return {">>fra<<": 5}

        def convert_tokens_to_ids(self, t):
            return {"fra_Latn": 7}.get(t, 0)

        def get_lang_id(self, code):
            return {"fr": 9}[code]

    tok = Tok()
    texts, gen = Seq2SeqEngine("m", convention="marian")._prepare(tok, ["Hi"], "en", "fr")
    assert texts == [">>fra<< Hi"] and gen == {}
    texts, gen = Seq2SeqEngine("m", convention="nllb")._prepare(tok, ["Hi"], "en", "fr")
    assert tok.src_lang == "eng_Latn" and gen == {"forced_bos_token_id": 7} and texts == ["Hi"]
    _, gen = Seq2SeqEngine("m", convention="m2m100")._prepare(tok, ["Hi"], "en", "fr")
    assert tok.src_lang == "en" and gen == {"forced_bos_token_id": 9}


# ------------------------------------------------------------------------------------ end to end over HTTP
@pytest.fixture()
def toy(tmp_path):
    s = english_sentences(9)
    num = english_sentences(1, digits=True, offset=6)[0]  # "... revenue grew by 12 percent ..."
    assert any(ch.isdigit() for ch in num)
    records = [
        conv("r1", f"{s[0]}\n\n{CODE}", f"- {s[1]} `pip install polyinstruct`\n- {s[2]} https://example.com/docs"),
        conv("r2", s[3], num),
        conv("r3", s[4], s[5]),                # answered in Spanish: wrong language for fr, right for es
        conv("r4", s[6], s[7]),                # s[6] copied untranslated
        conv("r5", f"{s[8]} {{name}}", s[3]),  # the {name} tag is dropped
    ]
    src = tmp_path / "toy.jsonl"
    write_jsonl(src, records)
    overrides = {s[4]: "es", s[6]: "copy", s[8]: "droptag"}
    return src, s, num, overrides


def rows(path: Path) -> list[dict]:
    return list(iter_jsonl(path))


def test_http_engine_translates_gates_writes_catalogue_and_feeds_the_budget_recipe(toy, tmp_path):
    from polyinstruct.data.api import budget_recipe

    src, s, num, overrides = toy
    refs = references()
    out = tmp_path / "mt"
    script = ScriptedTranslator(overrides)
    with ScriptedServer(script) as srv:
        res = translate_dataset(src, ["fr", "es"], out, http_engine(srv), progress=False)
    assert res.complete
    fr, es = rows(out / "fr.jsonl"), rows(out / "es.jsonl")
    assert [r["id"] for r in fr] == ["r1", "r2"] and [r["id"] for r in es] == ["r1", "r2", "r3"]
    # Code block, inline code, URL and list markers untouched; the prose is the translation.
    user, assistant = (m["content"] for m in fr[0]["messages"])
    assert user == f"{refs['fr'][s[0]]}\n\n{CODE}"
    assert assistant == (f"- {refs['fr'][s[1]]} `pip install polyinstruct`\n"
                         f"- {refs['fr'][s[2]]} https://example.com/docs")
    assert fr[1]["messages"][1]["content"] == refs["fr"][num] and "12" in fr[1]["messages"][1]["content"]
    assert fr[0]["language"] == "fr" and fr[0]["license"] == "CC0"
    assert fr[0]["meta"]["translation"]["from"] == "en" and fr[0]["meta"]["translation"]["engine"].startswith("openai")
    assert not any("Translate me not" in t for t in script.translated)  # code never sent
    # Rejects with reasons; records in = accepted + rejected, per language.
    rej_fr = {r["id"]: r["reason"] for r in rows(out / "fr.rejects.jsonl")}
    rej_es = {r["id"]: r["reason"] for r in rows(out / "es.rejects.jsonl")}
    assert rej_fr == {"r3": "wrong-language", "r4": "untranslated-copy", "r5": "protected-span-lost"}
    assert rej_es == {"r4": "untranslated-copy", "r5": "protected-span-lost"}
    wrong = next(r for r in rows(out / "fr.rejects.jsonl") if r["id"] == "r3")
    assert "language ID says es" in wrong["detail"]
    assert wrong["translation"][0]["content"] == refs["es"][s[4]]
    # A reject shows the whole translation, the lost tag included as the engine left it.
    lost = next(r for r in rows(out / "fr.rejects.jsonl") if r["id"] == "r5")
    assert [m["content"] for m in lost["translation"]] == [refs["fr"][s[8]], refs["fr"][s[3]]]
    assert "lost '{name}'" in lost["detail"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"]
    for lang, n_ok in (("fr", 2), ("es", 3)):
        q = summary["languages"][lang]
        assert q["accepted"] == n_ok and q["accepted"] + q["rejected"] == q["records"] == 5
        assert sum(q["rejected_by_reason"].values()) == q["rejected"]
        assert 0.5 < q["lid_mean_confidence"] <= 1 and 0.8 < q["length_ratio_mean"] < 1.6
    assert summary["languages"]["fr"]["rejected_by_reason"] == {
        "protected-span-lost": 1, "untranslated-copy": 1, "wrong-language": 1}
    # The source copy and a user catalogue: machine-translated entries with engine and date.
    assert [r["id"] for r in rows(out / "en.jsonl")] == ["r1", "r2", "r3", "r4", "r5"]
    cat = load_catalogue([out / "catalogue.yaml"])
    entry = cat.get("toy-fr")
    assert entry.generation == "machine-translated" and entry.size == 2 and entry.languages == ["fr"]
    assert "engine openai" in entry.description and summary["date"] in entry.description
    assert any(t.startswith("engine:openai|mt-x") for t in entry.tags)
    assert [c.id for c in cat.open("toy-es")] == ["r1", "r2", "r3"]
    # The documented path: the produced sets build study 1's arms.
    rep = budget_recipe(tmp_path / "arms", languages=["en", "fr", "es"], dataset_pattern="toy-{lang}",
                        catalogue_paths=[out / "catalogue.yaml"])
    assert set(rep["files"]) == {"mono-en", "mono-fr", "mono-es", "multi", "multi-down", "en-only"}
    assert rep["totals"]["multi"]["examples"] == 5 + 2 + 3

    # Rerun in the same folder: everything is done, nothing is asked.
    with ScriptedServer(ScriptedTranslator(overrides)) as srv:
        again = translate_dataset(src, ["fr", "es"], out, http_engine(srv), progress=False)
    assert srv.calls == [] and again.summary["languages"]["fr"]["accepted"] == 2
    # A fresh folder sharing the cache: 100% cache hits, and the server would fail any request.
    with ScriptedServer(lambda body, n: ("status", 400)) as srv:
        fresh = translate_dataset(src, ["fr", "es"], tmp_path / "mt2", http_engine(srv),
                                  cache_path=out / "cache.jsonl", progress=False)
    assert srv.calls == []
    for lang in ("fr", "es"):
        run = fresh.summary["languages"][lang]["this_run"]
        assert run["pieces_translated"] == 0 and run["cache_hits"] > 0
        assert rows(tmp_path / "mt2" / f"{lang}.jsonl") == rows(out / f"{lang}.jsonl")


def test_alpaca_input_is_translated_and_kept_apart(tmp_path):
    s = english_sentences(3)
    refs = references()
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps([{"instruction": s[0], "input": s[1], "output": s[2]}]), encoding="utf-8")
    with ScriptedServer(ScriptedTranslator()) as srv:
        res = translate_dataset(src, ["fr"], tmp_path / "mt", http_engine(srv), progress=False)
    assert res.complete
    (row,) = rows(tmp_path / "mt" / "fr.jsonl")
    user, assistant = row["messages"]
    assert user["content"] == refs["fr"][s[0]] and user["input"] == refs["fr"][s[1]]
    assert assistant["content"] == refs["fr"][s[2]] and "input" not in assistant


def test_back_translation_scores_the_round_trip(toy, tmp_path):
    src, s, _, _ = toy
    with ScriptedServer(ScriptedTranslator()) as srv:
        res = translate_dataset(src, ["fr"], tmp_path / "bt", http_engine(srv), limit=2, progress=False,
                                gates=GateConfig(back_translate=True, min_bt_chrf=101.0))
    # The scripted round trip gives the English back; a floor above 100 rejects everything, with the score.
    rej = rows(tmp_path / "bt" / "fr.rejects.jsonl")
    assert {r["reason"] for r in rej} == {"low-back-translation-chrf"} and len(rej) == 2
    assert "round-trip chrF 100.0" in rej[0]["detail"]
    with ScriptedServer(lambda body, n: ("status", 400)) as srv:  # everything cached, forward and back
        res = translate_dataset(src, ["fr"], tmp_path / "bt2", http_engine(srv), limit=2, progress=False,
                                cache_path=tmp_path / "bt" / "cache.jsonl", gates=GateConfig(back_translate=True))
    assert srv.calls == [] and res.summary["languages"]["fr"]["back_translation_chrf_mean"] == 100.0


def test_engine_failures_leave_records_for_the_next_run(toy, tmp_path, capsys):
    src, *_ = toy
    with ScriptedServer(lambda body, n: ("status", 503)) as srv:
        code = main(["data", "translate", str(src), "--to", "fr", "--engine", "openai", "--model", "m",
                     "--base-url", srv.base_url, "--max-retries", "0", "--out", str(tmp_path / "o"),
                     "--no-progress"])
    assert code == 1 and "rerun the same command" in capsys.readouterr().err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["languages"]["fr"]["pending"] == 5 and not summary["complete"]
    assert rows(tmp_path / "o" / "fr.jsonl") == [] and rows(tmp_path / "o" / "fr.rejects.jsonl") == []


def test_cli_errors_are_one_line(tmp_path, capsys):
    src = tmp_path / "dup.jsonl"
    write_jsonl(src, [conv("a", "Hello there, how are you?", "Fine."), conv("a", "Again?", "Yes.")])
    assert main(["data", "translate", str(src), "--to", "fr", "--engine", "opnai", "--model", "m",
                 "--out", str(tmp_path / "o")]) == 1
    assert "Did you mean: openai?" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"dup\.jsonl:2: id: .*'a'"):  # resume is by id: ids must be unique
        translate_dataset(src, ["fr"], tmp_path / "o", object(), progress=False)
    assert main(["data", "translate", str(src), "--to", "xx-none,und", "--engine", "openai", "--model", "m",
                 "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "o")]) == 1
    assert "is not a language code" in capsys.readouterr().err
    # A missing source fails before any model is loaded (the hf model "nowhere" does not exist either).
    assert main(["data", "translate", str(tmp_path / "missing.jsonl"), "--to", "fr", "--engine", "hf",
                 "--model", "nowhere", "--out", str(tmp_path / "o")]) == 1
    assert "missing.jsonl: no such file or folder" in capsys.readouterr().err
    assert main(["data", "translate", "polyinstruct-instruct-e", "--to", "fr", "--engine", "hf",
                 "--model", "nowhere", "--out", str(tmp_path / "o")]) == 1
    assert "Did you mean: polyinstruct-instruct-e" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ kill and resume
@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_translates_nothing_twice(tmp_path):
    """The server answers 5 pieces then holds every request; the test kills the run once those 5 are
    in the cache (the only work a kill may lose is a piece answered but not yet cached: none here)."""
    sentences = english_sentences(12)
    src = tmp_path / "src.jsonl"
    write_jsonl(src, [conv(f"k{i}", s, "42") for i, s in enumerate(sentences)])  # "42": nothing to translate
    out = tmp_path / "out"
    first = ScriptedTranslator(block_after=5)
    cmd = [sys.executable, "-m", "polyinstruct", "data", "translate", str(src), "--to", "fr", "--engine", "openai",
           "--model", "m", "--concurrency", "2", "--out", str(out), "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with ScriptedServer(first) as srv:
        proc = subprocess.Popen(cmd + ["--base-url", srv.base_url], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 120
            cache = out / "cache.jsonl"
            while not (cache.exists() and cache.read_text().count("\n") >= 5):
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.time() < deadline, "the run never cached 5 answers"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            first.release.set()
            if proc.poll() is None:
                proc.kill()
    assert len(first.translated) == 5 and not (out / "fr.jsonl").exists()
    assert len(rows(out / "cache.jsonl")) == 5

    second = ScriptedTranslator()
    with ScriptedServer(second) as srv:
        done = subprocess.run(cmd + ["--base-url", srv.base_url, "--json"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # Every piece translated exactly once over both runs.
    assert sorted(first.translated + second.translated) == sorted(sentences)
    assert not set(first.translated) & set(second.translated)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["languages"]["fr"]["this_run"] == {"pieces_translated": 7, "cache_hits": 5, "engine_errors": 0}
    assert [r["id"] for r in rows(out / "fr.jsonl")] == [f"k{i}" for i in range(12)]


# ------------------------------------------------------------------------------------ causal LM (tiny model)
@pytest.mark.slow
def test_tiny_causal_lm_engine_batches_by_length_and_reruns_from_cache(tiny_model_dir, tmp_path):
    sentences = english_sentences(6)
    src = tmp_path / "src.jsonl"
    write_jsonl(src, [conv(f"t{i}", f"{s}\n\n{CODE}", s[: 20 + 5 * i]) for i, s in enumerate(sentences)])
    engine = load_engine("hf", str(tiny_model_dir), prompt_style="completion", max_new_tokens=6, batch_size=4)
    assert isinstance(engine, LLMEngine)
    calls: list[list[str]] = []
    real = engine.backend.generate_text

    def spy(prompts, params):
        calls.append(list(prompts))
        return real(prompts, params)

    engine.backend.generate_text = spy
    res = translate_dataset(src, ["fr"], tmp_path / "o", engine, progress=False)
    sent = [p for batch in calls for p in batch]
    assert len(sent) == len(set(sent)) == 12 and [len(b) for b in calls] == [4, 4, 4]
    lengths = [len(p) for p in sent]
    assert lengths == sorted(lengths, reverse=True)  # longest first, so batches hold similar lengths
    assert not any("Translate me not" in p for p in sent)
    q = res.summary["languages"]["fr"]
    assert q["accepted"] + q["rejected"] == 6 and q["pending"] == 0  # a random model: rejected, never lost
    assert q["this_run"] == {"pieces_translated": 12, "cache_hits": 0, "engine_errors": 0}
    calls.clear()
    again = translate_dataset(src, ["fr"], tmp_path / "o2", engine, cache_path=tmp_path / "o" / "cache.jsonl",
                              progress=False)
    assert calls == [] and again.summary["languages"]["fr"]["this_run"]["cache_hits"] == 12
    assert rows(tmp_path / "o2" / "fr.rejects.jsonl") == rows(tmp_path / "o" / "fr.rejects.jsonl")


# ------------------------------------------------------------------------------------ seq2seq (tiny Marian)
@pytest.mark.slow
def test_tiny_marian_engine_runs_the_seq2seq_path_with_its_target_token(tmp_path):
    """A random 1-layer Marian with a ``>>fra<<`` token: the real transformers encoder-decoder path."""
    from transformers import MarianConfig, MarianMTModel

    from polyinstruct.models.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [">>fra<<"]})
    tok.save_pretrained(str(tmp_path / "opus-mt-en-fr"))
    cfg = MarianConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                       max_position_embeddings=256, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                       decoder_start_token_id=tok.pad_token_id)
    MarianMTModel(cfg).save_pretrained(str(tmp_path / "opus-mt-en-fr"))
    # A per-pair model name: {src} and {tgt} are filled in per language pair.
    engine = load_engine("marian", str(tmp_path / "opus-mt-{src}-{tgt}"), batch_size=2, max_new_tokens=4)
    seen: list[str] = []
    real = engine._prepare

    def spy(tok_, texts, src, tgt):
        texts, gen = real(tok_, texts, src, tgt)
        seen.extend(texts)
        return texts, gen

    engine._prepare = spy
    src = tmp_path / "src.jsonl"
    write_jsonl(src, [conv(f"m{i}", s, f"{s}\n\n{CODE}") for i, s in enumerate(english_sentences(3))])
    res = translate_dataset(src, ["fr"], tmp_path / "o", engine, progress=False)
    assert len(seen) == 3 and all(t.startswith(">>fra<< ") for t in seen)  # one piece per sentence, deduplicated
    q = res.summary["languages"]["fr"]
    assert q["accepted"] + q["rejected"] == 3 and q["this_run"]["pieces_translated"] == 3
