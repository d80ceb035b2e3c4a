"""Packing: a packed row gives each example the same loss as running it alone."""

from __future__ import annotations

import random

import pytest
import torch

from polyinstruct.data.records import Conversation, Message
from polyinstruct.errors import ConfigError
from polyinstruct.templates import load_template
from polyinstruct.templates.collate import (PackedCollator, PaddedCollator, length_grouped_batches,
                                            pack_best_fit_decreasing)
from polyinstruct.templates.tokenize import IGNORE_INDEX, tokenize_conversation


def per_token_loss(logits, labels):
    """Sum of token losses and count over labels != -100 (labels shifted by one)."""
    lg, lb = logits[:, :-1].float(), labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), lb.reshape(-1),
                                             ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, int((lb != IGNORE_INDEX).sum())


@pytest.fixture(scope="module")
def examples(tiny_tokenizer):
    t = load_template("tulu", tiny_tokenizer)
    convs = [
        Conversation("a", [Message("user", "Explain why the sky is blue."), Message("assistant", "Rayleigh scattering.")]),
        Conversation("b", [Message("user", "天空为什么是蓝色的？"), Message("assistant", "因为散射。"),
                           Message("user", "Ещё?"), Message("assistant", "Быстрая коричневая лиса.")]),
        Conversation("c", [Message("user", "Hi"), Message("assistant", "🙂")]),
        Conversation("d", [Message("system", "Be brief."), Message("user", "আকাশ কেন নীল?"),
                           Message("assistant", "দ্রুত বাদামী শিয়াল অলস কুকুরের উপর লাফ দেয়।")]),
    ]
    return [tokenize_conversation(c, tiny_tokenizer, t) for c in convs]


@pytest.mark.slow
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("mask", ["position_ids", "4d"])
def test_packed_loss_equals_one_by_one(tiny_model_dir, examples, attn, mask):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation=attn,
                                                 dtype=torch.float32).eval()
    alone = []
    with torch.no_grad():
        for ex in examples:
            b = PaddedCollator(0)([ex])
            out = model(**{k: v for k, v in b.items() if k != "labels"}, use_cache=False)
            alone.append(per_token_loss(out.logits, b["labels"]))
        packed = PackedCollator(mask=mask)(examples)
        assert set(packed) == ({"input_ids", "labels", "position_ids"} | ({"attention_mask"} if mask == "4d" else set()))
        logits = model(**{k: v for k, v in packed.items() if k != "labels"}, use_cache=False).logits
    start = 0
    for ex, (loss, n) in zip(examples, alone):
        end = start + len(ex["input_ids"])
        p_loss, p_n = per_token_loss(logits[:, start:end], packed["labels"][:, start:end])
        assert p_n == n == ex["num_loss_tokens"]
        assert abs(p_loss.item() / p_n - loss.item() / n) < 1e-5
        start = end
    # whole-batch loss as the training loop computes it (sum / count) matches too
    total, count = per_token_loss(logits, packed["labels"])
    assert abs(total.item() - sum(l.item() for l, _ in alone)) < 1e-4 and count == sum(n for _, n in alone)


@pytest.mark.slow
def test_plain_concatenation_leaks(tiny_model_dir, examples):
    """Control: without restarted positions (one long sequence) later examples see earlier ones."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    packed = PackedCollator()(examples)
    with torch.no_grad():
        leaky = model(input_ids=packed["input_ids"], use_cache=False).logits
        isolated = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
    n0 = len(examples[0]["input_ids"])
    assert torch.allclose(leaky[:, :n0], isolated[:, :n0], atol=1e-5)  # first example has nothing before it
    assert (leaky[:, n0:] - isolated[:, n0:]).abs().max() > 1e-3


def test_padded_collator_shapes_and_masks(examples):
    b = PaddedCollator(pad_token_id=2, pad_to_multiple_of=8)(examples[:2])
    n = max(len(e["input_ids"]) for e in examples[:2])
    assert b["input_ids"].shape[1] % 8 == 0 and b["input_ids"].shape[1] >= n
    for i, e in enumerate(examples[:2]):
        k = len(e["input_ids"])
        assert b["input_ids"][i, :k].tolist() == e["input_ids"]
        assert b["labels"][i, :k].tolist() == e["labels"]
        assert b["attention_mask"][i].sum().item() == k
        assert (b["labels"][i, k:] == IGNORE_INDEX).all() and (b["input_ids"][i, k:] == 2).all()
    with pytest.raises(ConfigError, match="pad_token"):
        PaddedCollator(None)


def test_packed_position_ids_restart(examples):
    b = PackedCollator()(examples)
    lens = [len(e["input_ids"]) for e in examples]
    expected = [p for n in lens for p in range(n)]
    assert b["position_ids"][0].tolist() == expected
    starts = [sum(lens[:i]) for i in range(len(lens))]
    assert all(b["labels"][0, s].item() == IGNORE_INDEX for s in starts)


def test_best_fit_decreasing_is_valid_and_tight():
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(500)]
    bins = pack_best_fit_decreasing(lengths, 128)
    flat = sorted(i for b in bins for i in b)
    assert flat == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    lower = -(-sum(lengths) // 128)
    assert len(bins) <= lower * 1.1 + 1  # BFD is within 11/9 OPT + 1; in practice near the bound
    assert pack_best_fit_decreasing([5, 3, 7, 2, 8, 1], 10) == [[4, 3], [2, 1], [0, 5]]
    with pytest.raises(ConfigError, match="capacity"):
        pack_best_fit_decreasing([11], 10)


def test_length_grouped_batches():
    rng = random.Random(1)
    lengths = [rng.randint(1, 500) for _ in range(1000)]
    batches = length_grouped_batches(lengths, batch_size=16, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert max(lengths[i] for i in batches[0]) == max(lengths)
    assert batches == length_grouped_batches(lengths, batch_size=16, seed=3)
    assert batches != length_grouped_batches(lengths, batch_size=16, seed=4)
    # grouping cuts padding compared with random batches
    def padded(bs):
        return sum(len(b) * max(lengths[i] for i in b) for b in bs)
    rand = list(range(1000))
    rng.shuffle(rand)
    assert padded(batches) < 0.8 * padded([rand[k:k + 16] for k in range(0, 1000, 16)])
    tb = length_grouped_batches(lengths, batch_tokens=2048, seed=0)
    assert all(len(b) * max(lengths[i] for i in b) <= 2048 or len(b) == 1 for b in tb)
    with pytest.raises(ConfigError):
        length_grouped_batches(lengths)
