"""Preference losses on sequence log-probabilities (equations and sources: docs/preference.md).

Every function takes per-sequence log-probabilities (summed over the answer's tokens, or averaged
where the loss is length-normalised) and returns per-example losses plus the rewards logged as
metrics; the caller averages over the global batch. Each equals TRL's (1.16) implementation on the
same inputs to 1e-5 (tests/train/test_preference_losses.py): ``DPOTrainer`` (sigmoid, ipo, hinge,
robust), ``ORPOTrainer.odds_ratio_loss``, ``CPOTrainer.cpo_loss`` with ``loss_type="simpo"`` and
``KTOTrainer``'s loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, *, loss: str = "sigmoid", beta: float = 0.1, label_smoothing: float = 0.0,
             chosen_tokens: torch.Tensor | None = None, rejected_tokens: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(losses, chosen_rewards, rejected_rewards) of DPO (Rafailov et al. 2023) and its variants.

    ``sigmoid``: -log sigma(beta * delta), with ``label_smoothing`` e the conservative form
    -(1-e) log sigma(beta delta) - e log sigma(-beta delta); ``ipo`` (Azar et al. 2023):
    (delta_c/|y_c| - delta_r/|y_r| - 1/(2 beta))^2, log-ratios averaged per token as TRL does (needs
    the token counts); ``hinge`` (SLiC, Zhao et al. 2023): max(0, 1 - beta delta); ``robust``
    (Chowdhury et al. 2024): ((1-e)(-log sigma(beta delta)) - e(-log sigma(-beta delta))) / (1-2e).
    delta = (log pi(y_c) - log ref(y_c)) - (log pi(y_r) - log ref(y_r)).
    """
    chosen_lr = policy_chosen - ref_chosen
    rejected_lr = policy_rejected - ref_rejected
    delta = chosen_lr - rejected_lr
    if loss == "sigmoid":
        out = -F.logsigmoid(beta * delta)
        if label_smoothing:
            out = out * (1 - label_smoothing) - F.logsigmoid(-beta * delta) * label_smoothing
    elif loss == "hinge":
        out = torch.relu(1 - beta * delta)
    elif loss == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the ipo loss needs the answers' token counts")
        d = chosen_lr / chosen_tokens.clamp(min=1) - rejected_lr / rejected_tokens.clamp(min=1)
        out = (d - 1 / (2 * beta)) ** 2
    elif loss == "robust":
        e = label_smoothing
        out = (-(1 - e) * F.logsigmoid(beta * delta) + e * F.logsigmoid(-beta * delta)) / (1 - 2 * e)
    else:
        raise ValueError(f"unknown dpo loss {loss!r}")
    return out, beta * chosen_lr.detach(), beta * rejected_lr.detach()


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, computed stably (Maechler 2012)."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_odds_ratio(policy_chosen_mean: torch.Tensor, policy_rejected_mean: torch.Tensor, *, beta: float = 0.1,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ORPO's odds-ratio term (Hong et al. 2024): (beta * log sigma(log odds), chosen_rewards,
    rejected_rewards, log_odds). The inputs are per-token *mean* log-probabilities; the ORPO loss is
    NLL(chosen) - mean(first output)."""
    c, r = policy_chosen_mean.float(), policy_rejected_mean.float()
    log_odds = (c - r) - (log1mexp(c) - log1mexp(r))
    return beta * F.logsigmoid(log_odds), beta * c.detach(), beta * r.detach(), log_odds.detach()


def simpo_loss(policy_chosen_mean: torch.Tensor, policy_rejected_mean: torch.Tensor, *, beta: float = 2.0,
               gamma: float = 0.5, label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimPO (Meng et al. 2024), reference-free: -log sigma(beta (mean log pi(y_c) - mean log pi(y_r)) -
    gamma), with label smoothing as TRL's CPO trainer. Inputs are per-token mean log-probabilities."""
    logits = (policy_chosen_mean - policy_rejected_mean) - gamma / beta
    out = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    return out, beta * policy_chosen_mean.detach(), beta * policy_rejected_mean.detach()


def kto_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor, *,
             beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO (Ethayarajh et al. 2024) on unpaired examples: (weighted losses, rewards) per example.

    desirable: 1 - sigma(beta (r - z0)); undesirable: 1 - sigma(beta (z0 - r)), r = log pi(y) - log
    ref(y), z0 = ``kl`` (detached, clamped at 0: the KL estimate from mismatched prompt/answer pairs).
    """
    r = policy_logps - ref_logps
    z0 = kl.detach().clamp(min=0)
    want = desirable.bool()
    loss = torch.where(want, 1 - torch.sigmoid(beta * (r - z0)), 1 - torch.sigmoid(beta * (z0 - r)))
    weight = torch.where(want, torch.full_like(loss, desirable_weight), torch.full_like(loss, undesirable_weight))
    return loss * weight, beta * r.detach()
