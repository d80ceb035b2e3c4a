"""Base models stop at the template's next-turn markers instead of writing the conversation on."""

from __future__ import annotations

import pytest

from polyinstruct.infer.backend import DecodingParams
from polyinstruct.infer.decoding import trim_at_stop
from polyinstruct.infer.prompting import next_turn_markers, resolve_prompt_format
from polyinstruct.templates import load_template


@pytest.mark.parametrize("name,markers", [
    ("tulu", ["<|user|>", "<|assistant|>"]),
    ("chatml", ["<|im_start|>user", "<|im_start|>assistant"]),
    ("alpaca", ["### Instruction:", "### Response:"]),
    ("llama2", ["[INST]", "[/INST]"]),
    ("llama3", ["<|start_header_id|>user<|end_header_id|>", "<|start_header_id|>assistant<|end_header_id|>"]),
])
def test_markers_come_from_the_template(name, markers):
    assert next_turn_markers(load_template(name)) == markers
    fmt = resolve_prompt_format(None, None, name)
    assert fmt.stop_strings[: len(load_template(name).stop_strings)] == load_template(name).stop_strings
    assert all(m in fmt.stop_strings for m in markers)


def test_a_looping_base_model_answer_is_cut_at_the_next_turn():
    fmt = resolve_prompt_format(None, None, "tulu")
    looped = "Paris is the capital of France.\n<|user|>\nAnd of Spain?\n<|assistant|>\nMadrid.\n<|user|>\n"
    assert trim_at_stop(looped, fmt.stop_strings) == ("Paris is the capital of France.\n", True)


def test_tokenizer_chat_template_markers(tiny_tokenizer):
    tok = tiny_tokenizer
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    try:
        fmt = resolve_prompt_format(None, tok, None)
    finally:
        tok.chat_template = None
    assert "<|im_start|>user" in fmt.stop_strings and "<|im_start|>assistant" in fmt.stop_strings


def test_hf_backend_passes_the_markers_to_generation(hf_backend):
    from polyinstruct.infer.hf import HFBackend

    backend = HFBackend(hf_backend.model, hf_backend.tokenizer, resolve_prompt_format(None, hf_backend.tokenizer, "tulu"))
    stops = backend._stops(DecodingParams(stop=["END"]))
    assert stops[0] == "END" and "<|user|>" in stops and "<|assistant|>" in stops
