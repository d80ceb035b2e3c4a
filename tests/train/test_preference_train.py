"""Preference training on the tiny model: masking, packing exactness, resume, budget, every objective."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polyinstruct.train import train
from tests.train.conftest import QA
from tests.train.helpers import losses, max_diff, weights


def write_pairs(path: Path) -> Path:
    """Language-consistency pairs: chosen = the answer in the prompt's language, rejected = an echo of the
    prompt or the next row's answer (another language); one record has a two-turn prefix."""
    with open(path, "w", encoding="utf-8") as f:
        for i, (lang, q, a) in enumerate(QA):
            other = QA[(i + 1) % len(QA)]
            rejected = {"content": q, "language": lang} if i % 2 else {"content": other[2], "language": other[0]}
            prefix = [{"role": "user", "content": q}]
            if i == 3:
                prefix = [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi there."},
                          *prefix]
            f.write(json.dumps({"id": f"p{i}", "language": lang, "messages": prefix,
                                "chosen": {"content": a, "language": lang}, "rejected": rejected},
                               ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl")


@pytest.fixture
def pref_config(base_config, pair_file):
    def make(**kw):
        return base_config(**{"data": [str(pair_file)], "objective": "dpo", **kw})
    return make


def test_only_the_compared_answer_carries_labels(tiny_tokenizer, pair_file):
    from polyinstruct.data.preference import read_preferences
    from polyinstruct.templates import load_template
    from polyinstruct.train.config import load_train_config
    from polyinstruct.train.preference.data import tokenize_preferences

    cfg = load_train_config({"model": "x", "data": [str(pair_file)], "output_dir": "o", "objective": "dpo"})
    recs = list(read_preferences(pair_file))
    exs = tokenize_preferences(recs, tiny_tokenizer, load_template("tulu", tiny_tokenizer), cfg)
    assert len(exs) == len(QA)
    for rec, ex in zip(recs, exs):
        for side in ("chosen", "rejected"):
            s = ex[side]
            text = tiny_tokenizer.decode([t for t, lab in zip(s["input_ids"], s["labels"]) if lab != -100])
            assert text.strip().startswith(getattr(rec, side).content)  # the answer (+ the end-of-turn text)
            assert "Hi there." not in text  # the prefix's assistant turn is context, not trained
        assert ex["num_loss_tokens"] == sum(sum(1 for x in ex[k]["labels"][1:] if x != -100)
                                            for k in ("chosen", "rejected"))


def test_packed_pairs_give_the_padded_log_probabilities(tiny_model_dir, tiny_tokenizer, pair_file):
    from transformers import AutoModelForCausalLM

    from polyinstruct.data.preference import read_preferences
    from polyinstruct.templates import load_template
    from polyinstruct.train.attention import register
    from polyinstruct.train.config import load_train_config
    from polyinstruct.train.preference.batch import collate, sequence_logps, sequences
    from polyinstruct.train.preference.data import tokenize_preferences

    cfg = load_train_config({"model": "x", "data": [str(pair_file)], "output_dir": "o", "objective": "dpo"})
    exs = tokenize_preferences(list(read_preferences(pair_file)), tiny_tokenizer,
                               load_template("tulu", tiny_tokenizer), cfg)[:5]
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation=register())
    seqs = sequences(exs)
    pad = tiny_tokenizer.pad_token_id
    with torch.no_grad():
        a, ca = sequence_logps(model, collate(seqs, packed=False, pad_id=pad, example_bounds=False), len(seqs))
        b, cb = sequence_logps(model, collate(seqs, packed=True, pad_id=pad, example_bounds=True), len(seqs))
        c, _ = sequence_logps(model, collate(seqs, packed=True, pad_id=pad, example_bounds=True), len(seqs),
                              sparse=True)
    assert torch.equal(ca, cb) and float((a - b).abs().max()) < 1e-4 and float((a - c).abs().max()) < 1e-4
    assert float(a.abs().min()) > 1  # real log-probabilities, not zeros


@pytest.mark.parametrize("method", ["full", "lora"])
def test_packed_and_padded_training_agree(pref_config, tmp_path, method):
    common = dict(method=method, max_steps=2, global_batch_size=8, micro_batch_size=4, lr=1e-2,
                  lora={"dropout": 0.0})  # dropout masks depend on the layout; without it the maths is equal
    a = train(pref_config(output_dir=str(tmp_path / "padded"), packing=False, **common))
    b = train(pref_config(output_dir=str(tmp_path / "packed"), packing=True, **common))
    la, lb = losses(a), losses(b)
    assert [s for s, _ in la] == [1, 2] and max(abs(x - y) for (_, x), (_, y) in zip(la, lb)) < 1e-5
    assert abs(la[1][1] - la[0][1]) > 1e-4  # the second step's loss moved: the model trained


@pytest.mark.parametrize("method,extra", [("lora", {}), ("full", {"preference": {"reference": "precompute"}}),
                                          ("full", {})])
def test_resume_from_a_checkpoint_is_bit_exact(pref_config, tmp_path, method, extra):
    common = dict(method=method, max_steps=4, save_every=2, lr=3e-3, lr_scheduler="constant",
                  global_batch_size=4, micro_batch_size=2, **extra)
    a = train(pref_config(output_dir=str(tmp_path / "a"), **common))
    ckpt = sorted((a / "checkpoints").glob("step-*"))[0]
    b = train(pref_config(output_dir=str(tmp_path / "b"), resume=str(ckpt), **common))
    folder = "model" if method == "full" else "adapter"
    assert max_diff(weights(a / folder), weights(b / folder)) == 0.0
    assert losses(a)[2:] == [r for r in losses(b) if r[0] > 2]  # steps 3 and 4, to the bit
    rows = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    assert {"rewards_chosen", "rewards_rejected", "rewards_margin", "rewards_accuracy"} <= set(rows[-1])
    if extra:
        assert (a / "reference_logps.json").is_file()


def test_token_budget_counts_both_answers(pref_config, tmp_path):
    run = train(pref_config(epochs=20, max_tokens=900, micro_batch_size=2, global_batch_size=4))
    b = json.loads((run / "budget.json").read_text())
    assert b["stopped_by"] == "max_tokens" and b["tokens_seen"] >= 900 and b["objective"] == "dpo"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "loss" in x]
    assert rows[-2]["tokens"] < 900  # stopped at the first step that reached the budget


@pytest.mark.parametrize("objective,extra", [("dpo", {"preference": {"loss": "ipo"}}), ("orpo", {}),
                                             ("simpo", {"preference": {"beta": 2.0}}), ("kto", {})])
def test_every_objective_lowers_its_loss(pref_config, tmp_path, objective, extra):
    run = train(pref_config(objective=objective, method="full", max_steps=6, global_batch_size=8,
                            micro_batch_size=4, lr=3e-3, lr_scheduler="constant", **extra))
    ls = [x for _, x in losses(run)]
    assert ls[-1] < ls[0]


def test_config_checks(pref_config):
    from polyinstruct.errors import ConfigError
    from polyinstruct.train.config import load_train_config

    with pytest.raises(ConfigError, match="micro_batch_size must be at least 2"):
        load_train_config(pref_config(objective="kto", micro_batch_size=1))
    with pytest.raises(ConfigError, match="preference.loss"):
        load_train_config(pref_config(preference={"loss": "sigmoidd"}))
    with pytest.raises(ConfigError, match="objective"):
        load_train_config(pref_config(objective="rlhf"))
