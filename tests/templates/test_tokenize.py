"""Tokenization with labels: masks, train_on, truncation, BOS, verification, TRL#598."""

from __future__ import annotations

import pytest

from polyinstruct.data.records import Conversation, Message
from polyinstruct.errors import ConfigError, DataError, SpanMismatchError
from polyinstruct.templates import load_template
from polyinstruct.templates.spec import TemplateSpec
from polyinstruct.templates.render import ChatTemplate
from polyinstruct.templates.tokenize import IGNORE_INDEX, TokenizerInfo, tokenize_conversation
from polyinstruct.templates.verify import verify_labels


def conv(*turns, id="x", **kw):
    roles = ["user", "assistant"] * len(turns)
    return Conversation(id, [Message(r, t) for r, t in zip(roles, turns)], **kw)


def trained_text(tok, row):
    return tok.decode([i for i, l in zip(row["input_ids"], row["labels"]) if l != IGNORE_INDEX],
                      skip_special_tokens=False)


def contains(seq, sub):
    return any(seq[i:i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


@pytest.mark.parametrize("tok_fixture", ["tiny_tokenizer", "sp_tokenizer"])
def test_trl598_marker_tokenized_differently_in_context(tok_fixture, request):
    """TRL#598: '### Response:' alone has other ids than inside the prompt, so searching the
    marker's ids fails (or matches the wrong place); polyinstruct masks from the rendered text."""
    tok = request.getfixturevalue(tok_fixture)
    # marker glued to the left context so even byte-level BPE merges across it
    spec = TemplateSpec(name="glued", system="{content}\n", user="### Instruction:\n{content}",
                        assistant="### Response:", eot="{eos}", assistant_suffix="\n")
    for template in (load_template("alpaca", tok), ChatTemplate(spec, tok)):
        # glued: "...in C#" + "### Response:" tokenizes as "##", "##", " Response" (byte-level BPE)
        c = conv("Write hello world in C#", "Eat well, sleep, move.")
        row = tokenize_conversation(c, tok, template)
        marker = template.spec.assistant.rstrip("\n")
        alone = tok(marker, add_special_tokens=False)["input_ids"]
        if template.name == "glued" or tok_fixture == "sp_tokenizer":
            assert not contains(row["input_ids"], alone), "marker ids should differ in context for this case"
        assert trained_text(tok, row) == "Eat well, sleep, move." + tok.eos_token
        first = row["labels"].index(next(l for l in row["labels"] if l != IGNORE_INDEX))
        assert tok.decode(row["input_ids"][:first], skip_special_tokens=False).endswith(template.spec.assistant)


def test_train_on_last_and_all(tiny_tokenizer):
    t = load_template("tulu", tiny_tokenizer)
    c = conv("one", "first answer", "two", "second answer")
    eos = tiny_tokenizer.eos_token
    assert trained_text(tiny_tokenizer, tokenize_conversation(c, tiny_tokenizer, t)) == \
        f"first answer{eos}second answer{eos}"
    last = tokenize_conversation(c, tiny_tokenizer, t, train_on="last")
    assert trained_text(tiny_tokenizer, last) == f"second answer{eos}"
    with pytest.raises(ConfigError, match="train_on"):
        tokenize_conversation(c, tiny_tokenizer, t, train_on="prompt")


def test_tulu_golden_ids_and_labels(tiny_tokenizer):
    t = load_template("tulu", tiny_tokenizer)
    row = tokenize_conversation(conv("Hi", "Hello"), tiny_tokenizer, t)
    text = tiny_tokenizer.decode(row["input_ids"], skip_special_tokens=False)
    assert text == "<|user|>\nHi\n<|assistant|>\nHello</s>"  # trailing "\n" after the last turn is cut
    n_prompt = len(tiny_tokenizer("<|user|>\nHi\n<|assistant|>\n", add_special_tokens=False)["input_ids"])
    assert row["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert row["labels"][n_prompt:] == row["input_ids"][n_prompt:]
    assert row["input_ids"][-1] == tiny_tokenizer.eos_token_id  # the model learns to stop
    assert row["num_loss_tokens"] == len(row["input_ids"]) - n_prompt and row["length"] == len(row["input_ids"])


def test_bos_added_once_following_the_tokenizer(tiny_tokenizer, sp_tokenizer):
    c = conv("Hi", "Hello")
    for tok in (tiny_tokenizer, sp_tokenizer):
        adds = TokenizerInfo.probe(tok).adds_bos
        for name in ("tulu", "chatml", "llama2", "llama3"):
            ids = tokenize_conversation(c, tok, load_template(name, tok))["input_ids"]
            n_bos = sum(1 for i in ids if i == tok.bos_token_id)
            want = {"tulu": adds, "chatml": False, "llama2": True, "llama3": True}[name]
            assert (ids[0] == tok.bos_token_id) == want and n_bos == int(want), (name, tok)
            # encode_prompt agrees with the tokenizer's own call when the policy is "auto"
            if name == "tulu":
                prompt = load_template(name, tok).render_prompt(c.messages[:1])
                assert load_template(name, tok).encode_prompt(c.messages[:1]) == tok(prompt)["input_ids"]


def test_truncation_keeps_whole_turns_and_reports(tiny_tokenizer):
    t = load_template("tulu", tiny_tokenizer)
    c = conv("q1", "a1 " * 5, "q2", "a2 " * 40)
    full = tokenize_conversation(c, tiny_tokenizer, t)
    first_turn = tokenize_conversation(conv("q1", "a1 " * 5), tiny_tokenizer, t)
    cut = tokenize_conversation(c, tiny_tokenizer, t, max_length=full["length"] - 1)
    assert cut["input_ids"] == first_turn["input_ids"] and cut["labels"] == first_turn["labels"]
    assert tokenize_conversation(c, tiny_tokenizer, t, max_length=full["length"] - 1, truncation="drop") is None
    assert tokenize_conversation(c, tiny_tokenizer, t, max_length=first_turn["length"] - 1) is None  # no full turn
    assert tokenize_conversation(c, tiny_tokenizer, t, max_length=full["length"]) == full
    last = tokenize_conversation(c, tiny_tokenizer, t, max_length=full["length"] - 1, train_on="last")
    assert last["num_loss_tokens"] > 0 and trained_text(tiny_tokenizer, last) == "a1 " * 5 + "</s>"


def test_verification_catches_wrong_labels(tiny_tokenizer):
    t = load_template("tulu", tiny_tokenizer)
    row = tokenize_conversation(conv("Hi there", "Hello"), tiny_tokenizer, t, verify=False)
    info = TokenizerInfo.probe(tiny_tokenizer)
    mask = [l != IGNORE_INDEX for l in row["labels"]]
    earlier = mask[1:] + [False]  # the span moved one token to the left (an off-by-one mask)
    shifted = dict(row, labels=[i if m else IGNORE_INDEX for i, m in zip(row["input_ids"], earlier)])
    with pytest.raises(SpanMismatchError, match=r"(?s)example x.*expected: \['Hello</s>'\].*decoded: +\['\\nHello'\]"):
        verify_labels([(shifted, ["Hello</s>"])], tiny_tokenizer, info)
    everything = dict(row, labels=list(row["input_ids"]))  # "trained on the prompt"
    with pytest.raises(SpanMismatchError, match="decoded"):
        verify_labels([(everything, ["Hello</s>"])], tiny_tokenizer, info)
    verify_labels([(row, ["Hello</s>"])], tiny_tokenizer, info)


def test_bad_conversations_raise_project_errors(tiny_tokenizer):
    t = load_template("tulu", tiny_tokenizer)
    with pytest.raises(DataError, match="no assistant message"):
        tokenize_conversation(Conversation("q", [Message("user", "only a question")]), tiny_tokenizer, t)
    with pytest.raises(DataError, match=r"messages\[1\].role"):
        t.render_prompt([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}])


def test_alpaca_input_from_meta_and_message(tiny_tokenizer):
    t = load_template("alpaca", tiny_tokenizer)
    c = Conversation("a", [Message("user", "Summarize."), Message("assistant", "Short.")], meta={"input": "Long text"})
    text = tiny_tokenizer.decode(tokenize_conversation(c, tiny_tokenizer, t)["input_ids"], skip_special_tokens=False)
    assert "paired with an input" in text and "### Input:\nLong text\n\n### Response:\nShort.</s>" in text
    p = t.render_prompt([{"role": "user", "content": "Summarize.", "input": "Long text"}])
    assert p.endswith("### Instruction:\nSummarize.\n\n### Input:\nLong text\n\n### Response:\n")
    # other templates fold the input into the user text
    assert "Summarize.\n\nLong text" in load_template("tulu").render_prompt(c)
