"""HF backend: batching/left padding change nothing, stop strings, streaming, adapters."""

from __future__ import annotations

import pytest

from polyinstruct.infer.decoding import resolve_decoding
from polyinstruct.infer.hf import HFBackend
from tests.infer.conftest import simple_template

GREEDY = resolve_decoding("greedy", max_new_tokens=24)


def naive_greedy(backend: HFBackend, conv, max_new_tokens: int = 24) -> str:
    """Plain batch-1 ``model.generate`` with no padding at all: the reference."""
    enc = backend.tokenizer(simple_template(conv), return_tensors="pt")
    out = backend.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=backend.pad_id)
    ids = out[0, enc["input_ids"].shape[1]:].tolist()
    if backend.tokenizer.eos_token_id in ids:
        ids = ids[:ids.index(backend.tokenizer.eos_token_id)]
    return backend.tokenizer.decode(ids, skip_special_tokens=True)


@pytest.mark.slow
def test_batched_left_padded_greedy_equals_one_by_one(hf_backend, conversations):
    gens = hf_backend.generate(conversations, GREEDY)  # batch_size 4: two padded, length-sorted batches
    texts = [g.text for g in gens]
    assert len(set(texts)) == len(texts), "prompts should give different replies on the varied model"
    assert texts == [naive_greedy(hf_backend, c) for c in conversations]
    for g in gens:
        assert g.finish_reason == "length" and g.completion_tokens == 24 and g.prompt_tokens > 0


def test_stop_string_trims_and_reports_stop(hf_backend, conversations):
    conv = conversations[0]
    full = hf_backend.generate([conv], GREEDY)[0].text
    stop = full[10:13]
    assert stop.strip(), full
    params = resolve_decoding("greedy", max_new_tokens=24, stop=[stop])
    batched = hf_backend.generate(conversations[:3], params)[0]
    assert batched.text == full[:full.index(stop)]
    assert batched.finish_reason == "stop"
    assert "".join(hf_backend.stream(conv, params)) == batched.text


def test_stream_pieces_join_to_generate_text(hf_backend, conversations):
    for conv in conversations[:3]:
        result = {}
        pieces = list(hf_backend.stream(conv, GREEDY, result=result))
        assert len(pieces) > 1
        gen = hf_backend.generate([conv], GREEDY)[0]
        assert "".join(pieces) == gen.text
        assert result["generation"].finish_reason == "length"


def test_stream_can_be_abandoned_and_backend_stays_usable(hf_backend, conversations):
    it = hf_backend.stream(conversations[0], resolve_decoding("greedy", max_new_tokens=200))
    next(it)
    it.close()  # releases the lock and stops the generation thread
    assert hf_backend.generate([conversations[1]], GREEDY)[0].text


def test_sampling_is_reproducible_with_seed(hf_backend, conversations):
    p = resolve_decoding("alpaca_cot", max_new_tokens=16, seed=3)
    a = [g.text for g in hf_backend.generate(conversations[:2], p)]
    b = [g.text for g in hf_backend.generate(conversations[:2], p)]
    assert a == b


@pytest.mark.slow
def test_adapter_unmerged_and_merged_give_identical_greedy_text(varied_model_dir, tmp_path, conversations):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(varied_model_dir))
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:  # B starts at zero; make the adapter change outputs
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(str(adapter_dir))
    cfg = (adapter_dir / "adapter_config.json")
    assert str(varied_model_dir) in cfg.read_text()

    kw = dict(template=simple_template, device="cpu", batch_size=4)
    unmerged = HFBackend.from_path(adapter_dir, **kw)
    merged = HFBackend.from_path(adapter_dir, merge=True, **kw)
    base_b = HFBackend.from_path(varied_model_dir, **kw)
    a = [x.text for x in unmerged.generate(conversations, GREEDY)]
    b = [x.text for x in merged.generate(conversations, GREEDY)]
    c = [x.text for x in base_b.generate(conversations, GREEDY)]
    assert a == b
    assert a != c, "the adapter must change the output, else the test proves nothing"

    # bf16: the adapter is merged in float32, then the merged weights go into a model loaded in bf16
    # (rotary buffers stay float32 as transformers keeps them); logits stay close to float32's
    low = HFBackend.from_path(adapter_dir, dtype="bfloat16", **kw)
    assert not hasattr(low.model, "peft_config")  # merged
    assert {b.dtype for n, b in low.model.named_buffers() if n.endswith("inv_freq")} <= {torch.float32}
    w = dict(merged.model.named_parameters())
    for name, p in low.model.named_parameters():
        assert p.dtype == torch.bfloat16 and torch.equal(p, w[name].to(torch.bfloat16)), name
    ids = torch.tensor([[1, 5, 17, 42, 99, 7, 3, 250, 12, 64]])
    with torch.no_grad():
        ref, got = merged.model(input_ids=ids).logits, low.model(input_ids=ids).logits.float()
    assert 0 < (ref - got).abs().max() / ref.std() < 0.1
    # adapter= on a base model is the same thing as loading the adapter folder
    d = [x.text for x in HFBackend.from_path(varied_model_dir, adapter=str(adapter_dir), **kw)
         .generate(conversations[:2], GREEDY)]
    assert d == a[:2]


def test_pad_generated_mid_reply_is_not_an_end(hf_backend):
    """Only eos ends a reply; pads after a stop-string finish are trimmed, a generated pad is not."""
    pad, eos = hf_backend.pad_id, hf_backend.eos_ids[0]
    assert pad != eos
    a, b = hf_backend.tokenizer("Hello there", add_special_tokens=False)["input_ids"][:2]
    p = resolve_decoding("greedy", max_new_tokens=6)
    g = hf_backend._finish([a, pad, b, eos, pad, pad], 3, p, [])
    assert (g.completion_tokens, g.finish_reason) == (3, "stop")
    assert g.text == hf_backend.tokenizer.decode([a, b])
    g = hf_backend._finish([a, b, pad, pad, pad, pad], 3, p, [])  # stopped by a stop string, then padded
    assert g.completion_tokens == 2
