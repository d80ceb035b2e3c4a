"""Fixtures for template tests: a SentencePiece tokenizer and tokenizers carrying chat templates."""

from __future__ import annotations

import pytest

CHATML_JINJA = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Llama-3 style: the template itself emits BOS, which polyinstruct must not double.
BOS_JINJA = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] + eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def sp_tokenizer():
    from polyinstruct.models.tiny import build_tiny_sentencepiece_tokenizer

    return build_tiny_sentencepiece_tokenizer()


@pytest.fixture(scope="session")
def chat_tokenizers(tiny_model_dir, sp_tokenizer, tmp_path_factory):
    """Fresh copies (the shared fixtures stay untouched) with chat templates set."""
    from transformers import AutoTokenizer

    bpe = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    bpe.chat_template = CHATML_JINJA
    d = tmp_path_factory.mktemp("sp")
    sp_tokenizer.save_pretrained(str(d))
    sp = AutoTokenizer.from_pretrained(str(d))
    sp.chat_template = BOS_JINJA
    return {"bpe": bpe, "sp": sp}
