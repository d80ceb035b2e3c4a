"""Layer-wise alignment: pooled states equal transformers' own hidden states, a sentence
paired with itself is perfectly aligned, shuffled pairs sit near chance."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from polyinstruct.analysis.alignment import (alignment_curves, expand_models, layer_measures, linear_cka,
                                             load_pairs, pooled_hidden_states)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval(), AutoTokenizer.from_pretrained(str(tiny_model_dir))


def test_pooled_states_equal_output_hidden_states(tiny):
    import torch

    model, tok = tiny
    sents = [en for en, _ in load_pairs(["fr"], limit=9)["fr"]] + ["Hi.", "Привет, как дела?"]
    pooled = pooled_hidden_states(model, tok, sents, batch_size=4)  # padded, length-sorted batches
    assert pooled.shape == (model.config.num_hidden_layers + 1, len(sents), model.config.hidden_size)
    for i, s in enumerate(sents):  # one sentence alone: no padding at all
        enc = tok(s, return_tensors="pt")
        with torch.no_grad():
            hs = model(**enc, output_hidden_states=True).hidden_states
        for layer, h in enumerate(hs):
            np.testing.assert_allclose(pooled[layer, i], h[0].mean(dim=0).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_self_pairs_are_perfectly_aligned_and_shuffled_pairs_near_chance(tiny):
    model, tok = tiny
    pairs = load_pairs(["ru"], limit=100)["ru"]
    en = pooled_hidden_states(model, tok, [a for a, _ in pairs])
    for row in alignment_curves(en, en):
        assert row["cos_parallel"] == pytest.approx(1.0)
        assert row["retrieval_en_xx"] == 1.0 and row["retrieval_xx_en"] == 1.0
        assert row["cka"] == pytest.approx(1.0)
    perm = list(range(len(pairs)))
    random.Random(0).shuffle(perm)
    ru = pooled_hidden_states(model, tok, [pairs[j][1] for j in perm])
    n = len(pairs)
    for row in alignment_curves(en, ru):
        assert row["retrieval_en_xx"] <= 5 / n and row["retrieval_xx_en"] <= 5 / n
        assert abs(row["cos_gap"]) < 0.05


def test_measures_on_constructed_vectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 16))
    y = x @ np.linalg.qr(rng.normal(size=(16, 16)))[0] * 3.0  # rotated and scaled: CKA is invariant
    assert linear_cka(x, y) == pytest.approx(1.0)
    m = layer_measures(x, rng.normal(size=(50, 16)))
    assert m["cka"] < 0.6 and m["retrieval_en_xx"] <= 0.1


def test_expand_models_reads_an_experiment_directory(tmp_path):
    exp = tmp_path / "exp"
    (exp / "cells" / "multi" / "run").mkdir(parents=True)
    (exp / "cells" / "multi" / "run" / "budget.json").write_text("{}")
    (exp / "cells" / "base").mkdir()
    (exp / "experiment.yaml").write_text("model: some/base\n")
    assert expand_models([str(exp), "mine=/some/path"]) == [
        ("base", "some/base"), ("multi", str(exp / "cells" / "multi" / "run")), ("mine", "/some/path")]


@pytest.mark.slow
def test_alignment_cli_writes_curves_table_and_plot(tiny_model_dir, tmp_path):
    from polyinstruct.cli import main

    rc = main(["analyze", "alignment", f"a={tiny_model_dir}", f"b={tiny_model_dir}", "--languages", "fr,zh",
               "--limit", "12", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "alignment.json").read_text())
    assert [m["label"] for m in data["models"]] == ["a", "b"]
    from polyinstruct.models.hardware import auto_dtype

    assert data["models"][0]["dtype"] == auto_dtype("cpu")  # --dtype auto, resolved and recorded
    assert set(data["models"][0]["curves"]) == {"fr", "zh"} and data["models"][0]["pairs"] == {"fr": 12, "zh": 12}
    assert len(data["models"][0]["curves"]["fr"]) == data["models"][0]["layers"]
    assert (tmp_path / "alignment.png").stat().st_size > 1000
    assert "| a | cka |" in (tmp_path / "alignment.md").read_text()
