"""Property tests: for every built-in template and two tokenizers (byte-level BPE and
SentencePiece), labelled tokens decode to exactly the assistant texts (+ end of turn)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyinstruct.data.records import Conversation, Message
from polyinstruct.templates import builtin_names, load_template
from polyinstruct.templates.tokenize import IGNORE_INDEX, tokenize_conversation

PIECES = ["Hello", " world", "中文内容", "天空为什么是蓝色的？", "Привет, мир", "Быстрая", "বাংলা ভাষা", "আকাশ",
          "🙂", "👍🏽", "🎉🎉", "é", "ß", " ", "  ", "   ", "\n", "\n\n", "\t", " \n ", ".", "?", "12", "3.14",
          "### Response:", "<|assistant|>", "{content}", "{eos}", "[INST]", "'s", "—", "\u00a0", "a"]
text = st.lists(st.sampled_from(PIECES), min_size=0, max_size=8).map("".join)
nonempty = st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join)


@st.composite
def conversations(draw):
    msgs = []
    if draw(st.booleans()):
        msgs.append(Message("system", draw(nonempty)))
    for _ in range(draw(st.integers(1, 3))):
        msgs.append(Message("user", draw(nonempty)))
        msgs.append(Message("assistant", draw(text)))
    return Conversation(id=f"c{draw(st.integers(0, 10**6))}", messages=msgs, language="xx")


def labelled_texts(tok, ids, labels):
    """Decode each labelled run in context: decode(ids[:end]) minus decode(ids[:start])."""
    out, i = [], 0
    while i < len(ids):
        if labels[i] == IGNORE_INDEX:
            i += 1
            continue
        j = i
        while j < len(ids) and labels[j] != IGNORE_INDEX:
            j += 1
        before = tok.decode(ids[:i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        upto = tok.decode(ids[:j], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        assert upto.startswith(before)
        out.append(upto[len(before):])
        i = j
    return out


TEMPLATES = builtin_names()


@pytest.mark.parametrize("tok_name", ["bpe", "sp"])
@pytest.mark.parametrize("name", TEMPLATES)
def test_labelled_tokens_decode_to_assistant_texts(name, tok_name, chat_tokenizers):
    tok = chat_tokenizers[tok_name]
    template = load_template(name, tok)
    eot = template.eot_text

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(conversations(), st.sampled_from(["all", "last"]))
    def check(conv, train_on):
        row = tokenize_conversation(conv, tok, template, train_on=train_on)
        ids, labels = row["input_ids"], row["labels"]
        answers = [m.content for m in conv.messages if m.role == "assistant"]
        if train_on == "last":
            answers = answers[-1:]
        assert labelled_texts(tok, ids, labels) == [a + eot for a in answers]
        assert row["num_loss_tokens"] == sum(x != IGNORE_INDEX for x in labels)
        # the whole sequence is the rendered conversation, with at most one leading BOS
        body = ids[1:] if ids and ids[0] == tok.bos_token_id else ids
        assert not body or body[0] != tok.bos_token_id
        segs = template.segments(conv)
        while not segs[-1].trained:  # tokenization ends at the last end-of-turn text
            segs.pop()
        rendered = "".join(s.text for s in segs)
        assert template.render(conv).startswith(rendered)
        if tok_name == "sp" and rendered.startswith(" "):
            # SentencePiece (Llama) drops one leading space of the *whole text*: its dummy prefix
            # absorbs it. Prompt side only, identical at inference; answers are checked exactly above.
            rendered = rendered[1:]
        assert tok.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False) == rendered
        # the prompt of the last turn has the ids inference will use
        last = max(i for i, m in enumerate(conv.messages) if m.role == "assistant")
        prompt_ids = template.encode_prompt(conv.messages[:last], tok)
        assert ids[:len(prompt_ids)] == prompt_ids
        assert labels[len(prompt_ids)] != IGNORE_INDEX or answers[-1] + eot == ""

    check()
