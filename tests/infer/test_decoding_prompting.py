"""Decoding presets, stop trimming, backend registry and the template choice."""

from __future__ import annotations

import logging
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyinstruct.errors import ConfigError, MissingDependencyError, UnknownNameError
from polyinstruct.infer import BACKENDS, load_backend
from polyinstruct.infer.decoding import StopTrimmer, resolve_decoding, trim_at_stop
from polyinstruct.infer.prompting import resolve_prompt_format


def test_presets_match_the_papers():
    a = resolve_decoding("alpaca_cot")
    assert (a.do_sample, a.top_p, a.temperature, a.no_repeat_ngram_size, a.repetition_penalty) == (
        True, 0.9, 1.0, 6, 1.8)
    t = resolve_decoding("tulu_eval")
    assert (t.do_sample, t.max_new_tokens) == (False, 512)
    g = resolve_decoding("greedy", max_new_tokens=7, stop=["###"], temperature=None)
    assert (g.do_sample, g.max_new_tokens, g.stop, g.temperature) == (False, 7, ["###"], 1.0)
    assert resolve_decoding("greedy").stop == []  # overrides never leak into the shared preset


def test_bad_decoding_names_and_values():
    with pytest.raises(ConfigError, match="Did you mean: greedy"):
        resolve_decoding("gredy")
    with pytest.raises(ConfigError, match="top_p"):
        resolve_decoding("greedy", top_p=1.5)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        resolve_decoding({"max_new_tokens": 0})
    with pytest.raises(ConfigError, match="unknown decoding field"):
        resolve_decoding({"max_tokens": 5})
    assert resolve_decoding("alpaca_cot", temperature=0).do_sample is False  # temperature 0 = greedy


def test_trim_at_earliest_stop():
    assert trim_at_stop("a<|user|>b###c", ["###", "<|user|>"]) == ("a", True)
    assert trim_at_stop("abc", ["x"]) == ("abc", False)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="ab#<|>u", max_size=40), cuts=st.lists(st.integers(0, 40), max_size=8),
       stops=st.lists(st.text(alphabet="ab#<|>u", min_size=1, max_size=4), max_size=3))
def test_streaming_trim_equals_batch_trim_for_any_chunking(text, cuts, stops):
    pieces, last = [], 0
    for c in sorted(set(cuts)):
        pieces.append(text[last:c])
        last = max(last, c)
    pieces.append(text[last:])
    # Generation ends with the piece in which a stop string is first complete (what
    # transformers' stop_strings criterion does); the batch path trims that same text.
    generated = ""
    for p in pieces:
        generated += p
        if trim_at_stop(generated, stops)[1]:
            break
    tr = StopTrimmer(stops)
    out = "".join(tr.feed(p) for p in pieces) + tr.flush()
    assert out == trim_at_stop(generated, stops)[0]


def test_load_backend_registry_and_errors():
    assert {"hf", "vllm", "openai_http"} <= set(BACKENDS.names())
    with pytest.raises(UnknownNameError, match="Did you mean: hf"):
        load_backend({"backend": "hff", "model": "x"})
    with pytest.raises(UnknownNameError, match="vllm"):
        load_backend("vlm:some/model")
    with pytest.raises(ConfigError, match="model"):
        load_backend({"backend": "hf"})
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="pip install"):
            load_backend("vllm:some/model")
    http = load_backend("openai_http:judge-model", base_url="http://127.0.0.1:9/v1")
    assert http.name == "openai_http" and http.model == "judge-model"


def test_load_backend_hf_from_path(varied_model_dir):
    b = load_backend(str(varied_model_dir), template="tulu", device="cpu", batch_size=2)
    assert b.name == "hf" and b.batch_size == 2 and b.prompt_format.source == "explicit"


def test_template_choice_order(varied_model_dir, tiny_tokenizer, tmp_path, caplog):
    from polyinstruct.infer.hf import HFBackend
    from polyinstruct.templates import load_template

    # 1. a run directory's template.yaml wins, and prompts are encoded exactly as training does
    run = tmp_path / "run"
    shutil.copytree(varied_model_dir, run / "model")
    load_template("alpaca").save(run / "template.yaml")
    with caplog.at_level(logging.INFO, logger="polyinstruct.infer.prompting"):
        b = HFBackend.from_path(run, device="cpu")
    assert b.prompt_format.source == "run_dir" and "run_dir" in caplog.text
    conv = [{"role": "user", "content": "Summarize the text."}]
    tpl = load_template(run / "template.yaml", tokenizer=b.tokenizer)
    assert b.render(conv) == tpl.render_prompt(conv)
    assert b.encode_messages(conv) == tpl.encode_prompt(conv, b.tokenizer)
    # 2. the tokenizer's own chat template when there is no template.yaml
    tok = tiny_tokenizer
    old = tok.chat_template
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}[assistant]"
    try:
        fmt = resolve_prompt_format(tmp_path / "plain", tok, None)
        assert fmt.source == "tokenizer" and fmt.render(conv).startswith("[user]Summarize")
    finally:
        tok.chat_template = old
    # 3. else tulu, said explicitly
    fmt = resolve_prompt_format(tmp_path / "plain", tok, None)
    assert (fmt.name, fmt.source) == ("tulu", "default")
    assert fmt.render(conv).startswith("<|user|>\nSummarize")
