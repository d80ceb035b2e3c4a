"""Template definitions: exact renders, saving/loading, languages, CoT, errors."""

from __future__ import annotations

import pytest

from polyinstruct.errors import DataError, UnknownNameError
from polyinstruct.templates import TemplateError, builtin_names, load_template
from polyinstruct.templates.render import Segment

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Why?"}]


def test_builtin_names():
    assert builtin_names() == ["alpaca", "chatml", "llama2", "llama3", "tulu", "tokenizer"]


@pytest.mark.parametrize("name,expected", [
    ("tulu", "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello</s>\n<|user|>\nWhy?\n<|assistant|>\n"),
    ("chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
               "Hello<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"),
    ("llama2", "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Why? [/INST] "),
    ("llama3", "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
               "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nWhy?<|eot_id|><|start_header_id|>assistant"
               "<|end_header_id|>\n\n"),
    ("alpaca", "Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello</s>\n\n### Instruction:\nWhy?\n\n"
               "### Response:\n"),
])
def test_render_prompt_exact(name, expected):
    assert load_template(name).render_prompt(CONV) == expected


def test_alpaca_prompts_match_stanford():
    t = load_template("alpaca")
    assert t.render_prompt([{"role": "user", "content": "Name a color."}]) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nName a color.\n\n### Response:\n")
    assert t.render_prompt([{"role": "user", "content": "Translate.", "input": "Bonjour"}]) == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nTranslate.\n\n"
        "### Input:\nBonjour\n\n### Response:\n")


def test_segments_mark_only_assistant_content_and_eot():
    segs = load_template("tulu").segments(CONV[:3])
    assert [s for s in segs if s.trained] == [Segment("Hello", True, 2), Segment("</s>", True, 2)]
    assert "".join(s.text for s in segs) == load_template("tulu").render(CONV[:3])


def test_placeholders_in_content_are_not_substituted():
    p = load_template("tulu").render_prompt([{"role": "user", "content": "{content} {eos} {system}"}])
    assert p == "<|user|>\n{content} {eos} {system}\n<|assistant|>\n"


def test_bound_template_uses_tokenizer_tokens(sp_tokenizer, tiny_tokenizer):
    assert load_template("tulu", tiny_tokenizer).stop_strings == ["</s>"]
    assert load_template("chatml").stop_strings == ["<|im_end|>"]
    assert load_template("llama3").stop_strings == ["<|eot_id|>"]


@pytest.mark.parametrize("name", ["tulu", "alpaca", "chatml", "llama2", "llama3"])
def test_save_and_load_roundtrip(name, tmp_path, tiny_tokenizer):
    t = load_template(name, tiny_tokenizer, language="zh" if name == "alpaca" else None, cot=name == "tulu")
    path = t.save(tmp_path / "template.yaml")
    back = load_template(str(path))
    assert back.spec == t.spec
    for msgs in (CONV, CONV[1:2], [{"role": "user", "content": "x", "input": "y"}]):
        assert back.render_prompt(msgs) == t.render_prompt(msgs)
    assert back.stop_strings == t.stop_strings


def test_tokenizer_template_roundtrip(chat_tokenizers, tmp_path):
    tok = chat_tokenizers["sp"]
    t = load_template("tokenizer", tok)
    assert t.spec.bos == "always"  # the jinja emits BOS; we add it as an id instead, once
    assert t.render_prompt(CONV[1:2]) == "<|start_header_id|>user<|end_header_id|>\n\nHi</s>" \
                                         "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assert t.stop_strings == ["</s>"]
    back = load_template(str(t.save(tmp_path / "t.yaml")))
    assert back.render_prompt(CONV) == t.render_prompt(CONV)
    with pytest.raises(TemplateError, match="needs a tokenizer"):
        load_template("tokenizer")


def test_prefix_unstable_jinja_is_rejected(chat_tokenizers):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(chat_tokenizers["bpe"].name_or_path)
    # drops earlier assistant turns, like templates that strip past reasoning
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'user' or loop.last %}"
                         "{{ m['role'] + ': ' + m['content'] + '\n' }}{% endif %}{% endfor %}"
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    t = load_template("tokenizer", tok)
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    with pytest.raises(DataError, match="not prefix-stable|not followed"):
        t.segments(msgs)


def test_language_and_cot():
    zh = load_template("alpaca", language="zh")
    assert zh.render_prompt([{"role": "user", "content": "你好"}]).endswith("### 指令:\n你好\n\n### 回答:\n")
    cot = load_template("tulu", cot=True)
    assert cot.render_prompt([{"role": "user", "content": "2+2?"}]) == \
        "<|user|>\n2+2?\nLet's think step by step.\n<|assistant|>\n"
    assert "让我们一步一步地思考。" in cot.render_prompt([{"role": "user", "content": "2+2?", "language": "zh"}])
    assert "ধাপে ধাপে" in load_template("chatml", language="bn", cot=True).render_prompt(CONV[1:2])


def test_unknown_and_bad_templates(tmp_path):
    with pytest.raises(UnknownNameError, match="Did you mean: chatml"):
        load_template("chatm")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nuser: '<u>{content}'\nasistant: '<a>'\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"bad.yaml:asistant: unknown key 'asistant'. Did you mean: assistant"):
        load_template(str(bad))
    bad.write_text("name: x\nuser: '<u>'\nsystem: '{content}'\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"bad.yaml:user: must contain the \{content\}"):
        load_template(str(bad))
    bad.write_text("name: [x\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"bad.yaml: invalid YAML \(line"):
        load_template(str(bad))
    with pytest.raises(TemplateError, match="not found"):
        load_template(str(tmp_path / "missing.yaml"))


def test_custom_yaml_template(tmp_path, tiny_tokenizer):
    from polyinstruct.templates.tokenize import IGNORE_INDEX, tokenize_conversation
    from polyinstruct.data.records import Conversation, Message

    p = tmp_path / "mine.yaml"
    p.write_text("name: mine\nsystem: 'SYS {content}\\n'\nuser: 'Q: {content}\\n'\nassistant: 'A:'\n"
                 "eot: '{eos}'\nassistant_suffix: '\\n'\n", encoding="utf-8")
    t = load_template(str(p), tiny_tokenizer)
    row = tokenize_conversation(Conversation("m", [Message("user", "hi"), Message("assistant", " yo")]),
                                tiny_tokenizer, t)
    assert tiny_tokenizer.decode([i for i, l in zip(row["input_ids"], row["labels"]) if l != IGNORE_INDEX]) \
        == " yo</s>"
