"""Alpaca's ``input`` stays its own part of the record and renders as each template expects."""

from __future__ import annotations

import json

from polyinstruct.data.formats import read_records
from polyinstruct.data.records import Conversation, Message
from polyinstruct.templates import load_template
from polyinstruct.templates.labels import IGNORE_INDEX
from polyinstruct.templates.tokenize import tokenize_conversation

ROW = {"instruction": "Translate to French.", "input": "Good morning, friends.", "output": "Bonjour, les amis."}

# Stanford Alpaca's "prompt_input" (alpaca-lora wording, "### Response:" then a newline), then the answer + EOS.
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\nTranslate to French.\n\n"
    "### Input:\nGood morning, friends.\n\n"
    "### Response:\nBonjour, les amis.</s>\n\n")


def _record(tmp_path) -> Conversation:
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps(ROW) + "\n", encoding="utf-8")
    (rec,) = list(read_records(f, "alpaca"))
    return rec


def test_reader_keeps_input_apart_and_canonical_jsonl_round_trips(tmp_path):
    rec = _record(tmp_path)
    assert rec.messages[0] == Message("user", "Translate to French.", None, "Good morning, friends.")
    d = rec.to_dict()
    assert d["messages"][0] == {"role": "user", "content": "Translate to French.", "input": "Good morning, friends."}
    assert Conversation.from_dict(d) == rec


def test_alpaca_template_renders_the_input_block_byte_exact(tmp_path):
    assert load_template("alpaca").render(_record(tmp_path)) == ALPACA_WITH_INPUT


def test_alpaca_without_input_uses_the_plain_prompt(tmp_path):
    f = tmp_path / "b.jsonl"
    f.write_text(json.dumps({"instruction": "Say hi.", "input": "", "output": "Hi."}) + "\n", encoding="utf-8")
    text = load_template("alpaca").render(next(iter(read_records(f))))
    assert "### Input:" not in text and text.startswith("Below is an instruction that describes a task. Write")


def test_chat_templates_append_the_input_to_the_user_turn(tmp_path):
    text = load_template("tulu").render(_record(tmp_path))
    assert text == "<|user|>\nTranslate to French.\n\nGood morning, friends.\n<|assistant|>\nBonjour, les amis.</s>\n"


def test_train_on_inputs_labels_the_whole_sequence(tiny_tokenizer, tmp_path):
    rec, t = _record(tmp_path), load_template("alpaca")
    only_answer = tokenize_conversation(rec, tiny_tokenizer, t)
    whole = tokenize_conversation(rec, tiny_tokenizer, t, train_on_inputs=True)
    assert whole["input_ids"] == only_answer["input_ids"]
    n_ignored = whole["labels"].count(IGNORE_INDEX)
    assert n_ignored <= 1  # at most the BOS token
    assert whole["num_loss_tokens"] > only_answer["num_loss_tokens"]
    labelled = [i for i, lab in zip(whole["input_ids"], whole["labels"]) if lab != IGNORE_INDEX]
    decoded = tiny_tokenizer.decode(labelled, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert "### Input:" in decoded and "Bonjour" in decoded


def test_train_on_inputs_with_a_sentencepiece_tokenizer(tmp_path):
    from polyinstruct.models.tiny import build_tiny_sentencepiece_tokenizer

    tok = build_tiny_sentencepiece_tokenizer(tmp_path / "sp")
    rec = _record(tmp_path)
    for name in ("alpaca", "tulu", "llama2"):
        whole = tokenize_conversation(rec, tok, load_template(name), train_on_inputs=True)  # verified spans
        assert whole["labels"].count(IGNORE_INDEX) <= 1


def test_training_config_field_reaches_tokenization(tiny_tokenizer, tmp_path):
    from polyinstruct.train.config import TrainConfig
    from polyinstruct.train.data import tokenize

    base = {"model": "tiny", "data": ["x.jsonl"], "output_dir": str(tmp_path / "run"), "template": "alpaca"}
    rec, t = _record(tmp_path), load_template("alpaca", tiny_tokenizer)
    (whole,) = tokenize([rec], tiny_tokenizer, t, TrainConfig.model_validate({**base, "train_on_inputs": True}))
    (answer,) = tokenize([rec], tiny_tokenizer, t, TrainConfig.model_validate(base))
    assert whole["input_ids"] == answer["input_ids"]
    assert sum(x != IGNORE_INDEX for x in whole["labels"]) > sum(x != IGNORE_INDEX for x in answer["labels"])


def test_predict_keeps_the_input_in_the_prompt(tiny_model_dir, tmp_path):
    from polyinstruct.infer.hf import HFBackend
    from polyinstruct.infer.predict import predict
    from polyinstruct.fileio import iter_jsonl

    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": "a1", "instruction": ROW["instruction"], "input": ROW["input"]}) + "\n",
                 encoding="utf-8")
    backend = HFBackend.from_path(tiny_model_dir, template=load_template("alpaca"), device="cpu")
    (row,) = list(iter_jsonl(predict(f, backend, tmp_path / "out.jsonl", data_format="alpaca", max_new_tokens=2)))
    assert row["messages"][0]["input"] == "Good morning, friends."
    assert "### Input:\nGood morning, friends.\n\n### Response:\n" in row["prompt"]


def test_a_tokenizers_own_jinja_template_gets_the_input_after_the_content(chat_tokenizers, tmp_path):
    t = load_template("tokenizer", chat_tokenizers["bpe"])
    rec = _record(tmp_path)
    joined = Conversation("j", [Message("user", "Translate to French.\n\nGood morning, friends."),
                                Message("assistant", "Bonjour, les amis.")])
    assert t.render(rec) == t.render(joined)
    assert "Good morning, friends." in t.render_prompt(rec.messages[:1])
