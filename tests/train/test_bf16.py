"""bf16 on CPU: autocast training keeps fp32 master weights and tracks fp32 losses; bf16 inference.

Tolerance (docs/training.md, "bf16 on CPU"): bf16 keeps 8 significant bits, so each matmul input is
rounded by at most 2^-9 relative (0.2%), with fp32 accumulation and fp32 weights/optimizer. A
per-token loss is a mean over hundreds of tokens, so rounding errors largely cancel; we allow 1%
of the loss per step over the first 20 steps (2.5x bf16's unit roundoff 2^-8), which a real
precision bug (e.g. bf16 optimizer states, or a lost update) exceeds within a few steps.
"""

from __future__ import annotations

import pytest
import torch

from polyinstruct.train import train
from tests.train.helpers import losses


@pytest.mark.slow
def test_bf16_autocast_losses_track_fp32_for_20_steps(base_config, tmp_path):
    common = dict(method="full", global_batch_size=8, micro_batch_size=4, max_steps=20, lr=1e-3)
    fp32 = losses(train(base_config(output_dir=str(tmp_path / "fp32"), **common)))
    bf16_run = train(base_config(output_dir=str(tmp_path / "bf16"), mixed_precision="bf16", **common))
    bf16 = losses(bf16_run)
    assert [s for s, _ in fp32] == [s for s, _ in bf16] == list(range(1, 21))
    for (_, a), (_, b) in zip(fp32, bf16):
        assert abs(a - b) <= 0.01 * a
    assert fp32 != bf16  # autocast really ran in bf16 (identical losses would mean it was ignored)
    assert bf16[-1][1] < bf16[0][1] - 0.5  # and it learns
    from tests.train.helpers import weights

    assert all(t.dtype == torch.float32 for t in weights(bf16_run / "model").values())  # fp32 master weights


def test_bf16_inference_on_cpu_is_close_to_fp32(tiny_model_dir):
    from polyinstruct.infer.hf import HFBackend

    ids = torch.tensor([[1, 5, 17, 42, 99, 7, 3, 250, 12, 64]])
    out = {}
    for dtype in ("float32", "bfloat16"):
        b = HFBackend.from_path(tiny_model_dir, device="cpu", dtype=dtype)
        assert next(b.model.parameters()).dtype == getattr(torch, dtype)
        with torch.no_grad():
            out[dtype] = b.model(input_ids=ids).logits.float()
    err = (out["float32"] - out["bfloat16"]).abs().max() / out["float32"].std()
    assert 0 < err < 0.1


def test_frozen_base_cast_once_gives_the_same_lora_run_as_autocast_alone(base_config, tmp_path, monkeypatch):
    """Under bf16 autocast an adapter run stores its frozen linear weights in bf16 once; autocast
    would cast them to exactly these values at every forward, so the losses are the same."""
    import polyinstruct.train.run as run_mod

    common = dict(method="lora", global_batch_size=8, micro_batch_size=4, max_steps=4, lr=1e-3, mixed_precision="bf16")
    cast_once = train(base_config(output_dir=str(tmp_path / "cast"), **common))
    seen = []
    monkeypatch.setattr(run_mod, "cast_frozen_linears", lambda model, dtype: seen.append(1) or 0)
    every_step = train(base_config(output_dir=str(tmp_path / "autocast"), **common))
    assert seen  # the second run really skipped the cast
    a, b = losses(cast_once), losses(every_step)
    assert len(a) == 4 and max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-6
    # the bf16 copy of a tied LM head is no extra parameter in what the run reports (budget, FLOPs)
    import json

    budgets = [json.loads((r / "budget.json").read_text()) for r in (cast_once, every_step)]
    assert budgets[0]["parameters"] == budgets[1]["parameters"] and budgets[0]["flops_estimate"] == budgets[1]["flops_estimate"]


def test_cast_frozen_linears_leaves_trainable_weights_embeddings_and_tied_lookups_in_fp32(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from polyinstruct.train.modeling import cast_frozen_linears

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    assert cast_frozen_linears(model, torch.bfloat16) > 0
    for name, p in model.named_parameters():
        if p.requires_grad or "embed" in name or "norm" in name:
            assert p.dtype == torch.float32, name
    frozen = [m for n, m in model.named_modules() if n.endswith("k_proj")]
    assert frozen and all(m.weight.dtype == torch.bfloat16 for m in frozen)
