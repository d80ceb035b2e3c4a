"""The training template travels with the model as the tokenizer's Jinja ``chat_template``:
``tokenizer.apply_chat_template`` renders byte for byte what polyinstruct renders (BOS text first
exactly when training put BOS first), for every built-in template, its languages and
chain-of-thought; and a checkpoint and a merged folder load with plain transformers/peft and
prompt in the training format."""

from __future__ import annotations

import importlib.util

import pytest

from polyinstruct.templates import builtin_names, load_template
from polyinstruct.templates.hf_template import adds_bos, to_chat_template

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": 'Hi {content} "q" \\n {{ x }} {% y %}'},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Привет"}],
    [{"role": "user", "content": "Translate", "input": "Bonjour"}, {"role": "assistant", "content": "Hello"}],
    [{"role": "user", "content": "A", "language": "fr"}, {"role": "assistant", "content": "B"},
     {"role": "user", "content": "C"}, {"role": "assistant", "content": "D"}],
]
FORMATS = [n for n in builtin_names() if n != "tokenizer"]


@pytest.fixture(scope="module")
def tokenizers(tiny_tokenizer):
    out = [tiny_tokenizer]
    from polyinstruct.models.packaged import is_prepared, prepared_path

    if is_prepared("gemma-3-270m"):  # a BOS model (prepared by the models extra's tests)
        from transformers import AutoTokenizer

        out.append(AutoTokenizer.from_pretrained(str(prepared_path("gemma-3-270m"))))
    return out


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("options", [{}, {"language": "zh"}, {"cot": True}], ids=["plain", "zh", "cot"])
def test_apply_chat_template_equals_polyinstruct_rendering(name, options, tokenizers):
    assert {"alpaca", "chatml", "llama2", "llama3", "tulu"} <= set(FORMATS)
    for tok in tokenizers:
        tpl = load_template(name, tok, **options)
        tok.chat_template = to_chat_template(tpl, tok)
        bos = tok.bos_token if adds_bos(tpl, tok) else ""
        for conv in CONVERSATIONS:
            for gen in (True, False):
                want = bos + tpl.render(conv, add_generation_prompt=gen)
                got = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
                assert got == want, (name, options, conv, gen)
        ids = list(tok.apply_chat_template(CONVERSATIONS[0], tokenize=True, add_generation_prompt=True,
                                           return_dict=True)["input_ids"])
        assert (ids[0] == tok.bos_token_id) == bool(bos)  # BOS first exactly when training has it
        assert ids == tpl.encode_prompt(CONVERSATIONS[0], tok) or tok.decode(ids) == tok.decode(
            tpl.encode_prompt(CONVERSATIONS[0], tok))


def test_errors_the_project_raises_are_raised_by_the_jinja_template(tiny_tokenizer):
    import jinja2

    tpl = load_template("llama2", tiny_tokenizer)  # folds the system prompt into the first user turn
    tiny_tokenizer.chat_template = to_chat_template(tpl, tiny_tokenizer)
    late_system = [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]
    with pytest.raises(jinja2.exceptions.TemplateError, match="system message only first"):
        tiny_tokenizer.apply_chat_template(late_system, tokenize=False)


@pytest.mark.slow
def test_checkpoint_and_merged_folder_prompt_in_the_training_format(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from polyinstruct.fileio import write_jsonl
    from polyinstruct.train import train
    from polyinstruct.train.merge import merge_adapter

    data = tmp_path / "train.jsonl"
    write_jsonl(data, [{"id": f"r{i}", "language": "en", "messages": [
        {"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": f"{i}"}]} for i in range(8)])
    run = train({"model": str(tiny_model_dir), "template": "alpaca", "data": [str(data)], "method": "lora",
                 "output_dir": str(tmp_path / "run"), "global_batch_size": 4, "micro_batch_size": 4,
                 "max_steps": 2, "save_every": 1, "keep_last": 5, "lr": 1e-3, "seed": 0,
                 "lora": {"target_modules": "all-linear"}}, progress=False)
    merged = merge_adapter(run, tmp_path / "merged")
    ckpt = sorted((run / "checkpoints").glob("step-*"))[0]
    conv = [{"role": "system", "content": "Answer."}, {"role": "user", "content": "Say 3"}]
    for folder in (ckpt, run / "adapter", merged):
        tok = AutoTokenizer.from_pretrained(str(folder))
        tpl = load_template(run / "template.yaml", tok)  # what training rendered with
        bos = tok.bos_token if adds_bos(tpl, tok) else ""
        assert tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True) == \
            bos + tpl.render_prompt(conv), folder
        assert "### Response:" in tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(ckpt))
    model = AutoModelForCausalLM.from_pretrained(str(merged))
    ids = AutoTokenizer.from_pretrained(str(merged)).apply_chat_template(conv, add_generation_prompt=True,
                                                                         return_tensors="pt", return_dict=True)
    assert model.generate(**ids, max_new_tokens=2, do_sample=False).shape[1] > ids["input_ids"].shape[1]


@pytest.mark.skipif(importlib.util.find_spec("jinja2") is None, reason="jinja2 comes with transformers")
def test_the_template_compiles_in_a_plain_sandbox(tiny_tokenizer):
    """No transformers-only helper beyond raise_exception: the template is plain sandboxed Jinja."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    for name in FORMATS:
        tpl = load_template(name, tiny_tokenizer)
        src = to_chat_template(tpl, tiny_tokenizer)
        out = env.from_string(src).render(messages=CONVERSATIONS[0], add_generation_prompt=True,
                                          bos_token=tiny_tokenizer.bos_token, raise_exception=None)
        bos = tiny_tokenizer.bos_token if adds_bos(tpl, tiny_tokenizer) else ""
        assert out == bos + tpl.render_prompt(CONVERSATIONS[0]), name
