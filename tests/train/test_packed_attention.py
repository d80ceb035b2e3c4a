"""Per-example attention inside packed rows (train/attention.py) equals the unpacked computation."""

from __future__ import annotations

import torch


def test_packed_row_with_example_boundaries_gives_each_examples_unpacked_logits(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from polyinstruct.templates.collate import PackedCollator, PaddedCollator
    from polyinstruct.train.attention import boundaries, register

    packed_model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation=register()).eval()
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(0)
    exs = [{"input_ids": torch.randint(5, 200, (n,), generator=g).tolist(), "labels": [1] * n} for n in (7, 30, 1, 12)]
    row = PackedCollator()(exs)
    cu = boundaries(row["position_ids"])
    assert cu.tolist() == [0, 7, 37, 38, 50]
    pad = PaddedCollator(0)(exs)
    with torch.no_grad():
        packed = packed_model(input_ids=row["input_ids"], position_ids=row["position_ids"], cu_seq_lens_q=cu,
                              cu_seq_lens_k=cu, use_cache=False).logits[0]
        alone = plain(input_ids=pad["input_ids"], attention_mask=pad["attention_mask"], use_cache=False).logits
        # without boundaries (padded batches, evaluation) it is plain SDPA
        padded_same = packed_model(input_ids=pad["input_ids"], attention_mask=pad["attention_mask"],
                                   use_cache=False).logits
    s = 0
    for r, e in enumerate(exs):
        n = len(e["input_ids"])
        assert torch.allclose(packed[s:s + n], alone[r, :n], atol=1e-5, rtol=0)
        s += n
    assert torch.equal(padded_same, alone)
