"""Every preference loss equals TRL's (1.16) on the same batches, to 1e-5.

DPO (sigmoid, ipo, hinge, robust) and KTO: a real ``DPOTrainer``/``KTOTrainer`` is built on the tiny model,
the policy is perturbed away from its reference, and TRL's ``compute_loss`` on TRL's own collated batch
is compared with our log-probabilities (``batch.sequence_logps``) and losses on the same tensors. ORPO's
odds-ratio term and SimPO are compared with ``ORPOTrainer.odds_ratio_loss`` and ``CPOTrainer.cpo_loss``
called on the same log-probabilities.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from polyinstruct.train.preference.batch import sequence_logps
from polyinstruct.train.preference.losses import dpo_loss, kto_loss, orpo_odds_ratio, simpo_loss

trl = pytest.importorskip("trl")

PAIRS = [{"prompt": "Explain why the sky is blue.", "chosen": " Le ciel est bleu.", "rejected": " The sky."},
         {"prompt": "Give three tips for staying healthy.", "chosen": " Eat fruit, sleep well.", "rejected": " No."},
         {"prompt": "¿Cuál es la capital de España?", "chosen": " Madrid.", "rejected": " ¿Cuál es la capital?"}]


def _perturb(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _logps(model, input_ids, attention_mask, completion_mask):
    labels = input_ids.masked_fill(completion_mask == 0, -100)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return sequence_logps(model, batch, input_ids.shape[0])


@pytest.mark.parametrize("loss,ls", [("sigmoid", 0.0), ("ipo", 0.0), ("hinge", 0.0), ("robust", 0.1)])
def test_dpo_losses_equal_trl_dpo_trainer(tiny_model_dir, tmp_path, loss, ls):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=3, report_to=[], loss_type=[loss],
                     beta=0.3, label_smoothing=ls, use_cpu=True)
    t = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(PAIRS), processing_class=tok)
    _perturb(t.model)
    batch = next(iter(t.get_train_dataloader()))
    with torch.no_grad():
        theirs = float(t.compute_loss(t.model, batch))
        lp, cnt = _logps(t.model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        ref, _ = _logps(t.ref_model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    n = lp.shape[0] // 2
    ours, rc, rr = dpo_loss(lp[:n], lp[n:], ref[:n], ref[n:], loss=loss, beta=0.3, label_smoothing=ls,
                            chosen_tokens=cnt[:n], rejected_tokens=cnt[n:])
    assert abs(theirs) > 1e-3 and abs(float(ours.mean()) - theirs) < 1e-5
    assert float((rc - rr).abs().max()) > 0  # the policy really differs from its reference


def test_kto_equals_trl_kto_trainer(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    rows = [{"prompt": p["prompt"], "completion": p["chosen"], "label": True} for p in PAIRS] + \
           [{"prompt": p["prompt"], "completion": p["rejected"], "label": False} for p in PAIRS]
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    args = KTOConfig(output_dir=str(tmp_path), per_device_train_batch_size=6, report_to=[], beta=0.2,
                     desirable_weight=1.0, undesirable_weight=1.5, use_cpu=True)
    t = KTOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    _perturb(t.model, seed=1)
    batch = next(iter(t.get_train_dataloader()))
    with torch.no_grad():
        theirs = float(t.compute_loss(t.model, batch))
        lp, _ = _logps(t.model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        ref, _ = _logps(t.ref_model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        kl_p, _ = _logps(t.model, batch["KL_input_ids"], batch["KL_attention_mask"], batch["KL_completion_mask"])
        kl_r, _ = _logps(t.ref_model, batch["KL_input_ids"], batch["KL_attention_mask"],
                         batch["KL_completion_mask"])
    desirable = torch.as_tensor(batch["label"], dtype=torch.bool)
    losses, _ = kto_loss(lp, ref, desirable, (kl_p - kl_r).mean(), beta=0.2, desirable_weight=1.0,
                         undesirable_weight=1.5)
    assert abs(theirs) > 1e-3 and abs(float(losses.mean()) - theirs) < 1e-5


def _means(seed=0, n=5):
    g = torch.Generator().manual_seed(seed)
    return -torch.rand(n, generator=g) * 3 - 0.01, -torch.rand(n, generator=g) * 3 - 0.01


def test_orpo_odds_ratio_equals_trl():
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    c, r = _means(0)
    this = SimpleNamespace(beta=0.25, accelerator=SimpleNamespace(device="cpu"))
    losses, rc, rr, ratio_mean, log_odds_mean = ORPOTrainer.odds_ratio_loss(this, c, r)
    ours, oc, orr, log_odds = orpo_odds_ratio(c, r, beta=0.25)
    assert torch.allclose(ours, losses, atol=1e-6) and torch.allclose(oc, rc) and torch.allclose(orr, rr)
    assert abs(float(log_odds.mean()) - float(log_odds_mean)) < 1e-6


@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_simpo_equals_trl_cpo_simpo(ls):
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    c, r = _means(1)
    this = SimpleNamespace(beta=2.0, simpo_gamma=0.7, label_smoothing=ls, alpha=0.0, loss_type="simpo",
                           accelerator=SimpleNamespace(device="cpu"))
    losses, rc, rr = CPOTrainer.cpo_loss(this, c, r)
    ours, oc, orr = simpo_loss(c, r, beta=2.0, gamma=0.7, label_smoothing=ls)
    assert torch.allclose(ours, losses, atol=1e-6) and torch.allclose(oc, rc) and torch.allclose(orr, rr)


def test_sigmoid_label_smoothing_is_conservative_dpo():
    """cDPO: with smoothing e the sigmoid loss is TRL CPO's smoothed sigmoid form on the log-ratio margin."""
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    c, r = _means(2)
    this = SimpleNamespace(beta=0.5, label_smoothing=0.15, alpha=0.0, loss_type="sigmoid",
                           accelerator=SimpleNamespace(device="cpu"))
    theirs, _, _ = CPOTrainer.cpo_loss(this, c, r)
    zero = torch.zeros_like(c)
    ours, _, _ = dpo_loss(c, r, zero, zero, loss="sigmoid", beta=0.5, label_smoothing=0.15)
    assert torch.allclose(ours, theirs, atol=1e-6)
