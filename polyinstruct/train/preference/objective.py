"""One micro-batch's preference loss: policy (and reference) log-probabilities in, summed losses out.

``micro_batch_loss`` returns the micro-batch's *sum* of per-example losses (plus, for ORPO, the summed
NLL of the chosen tokens) and metric sums; the loop divides by the global batch's example (and chosen
token) counts, so a step's loss is the mean over the global batch however it is cut into
micro-batches and processes, as the SFT loop's token normalisation.
"""

from __future__ import annotations

from typing import Callable

import torch

from polyinstruct.train.preference.batch import sequence_logps
from polyinstruct.train.preference.config import PreferenceOptions
from polyinstruct.train.preference.losses import dpo_loss, kto_loss, orpo_odds_ratio, simpo_loss


def metric_sums(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, float]:
    margin = chosen_rewards - rejected_rewards
    return {"rewards_chosen": float(chosen_rewards.sum()), "rewards_rejected": float(rejected_rewards.sum()),
            "rewards_margin": float(margin.sum()), "rewards_accuracy": float((margin > 0).float().sum())}


def micro_batch_loss(objective: str, opts: PreferenceOptions, policy, batch: dict, examples: list[dict], *,
                     reference: Callable[[dict, int], torch.Tensor] | None, n_examples: int,
                     n_chosen_tokens: int, sparse: bool, autocast) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss to backpropagate: this micro-batch's share of the global-batch mean, metric sums).

    ``reference(batch, n_seq)`` gives the reference log-probabilities of the batch's sequences (None for
    reference-free objectives, or when each example holds precomputed ``ref`` values).
    """
    n = len(examples)
    if objective == "kto":
        return _kto(opts, policy, batch, examples, reference, n_examples, sparse, autocast)
    logps, counts = sequence_logps(policy, batch, 2 * n, sparse=sparse, autocast=autocast)
    pc, pr = logps[:n], logps[n:]
    cc, cr = counts[:n], counts[n:]
    if objective == "dpo":
        ref = _reference(examples, batch, 2 * n, reference, logps.device)
        losses, rc, rr = dpo_loss(pc, pr, ref[:n], ref[n:], loss=opts.loss, beta=opts.beta,
                                  label_smoothing=opts.label_smoothing, chosen_tokens=cc, rejected_tokens=cr)
        return losses.sum() / n_examples, {"pref_loss": float(losses.detach().sum()), **metric_sums(rc, rr)}
    mc, mr = pc / cc.clamp(min=1), pr / cr.clamp(min=1)
    if objective == "simpo":
        losses, rc, rr = simpo_loss(mc, mr, beta=opts.beta, gamma=opts.simpo_gamma,
                                    label_smoothing=opts.label_smoothing)
        return losses.sum() / n_examples, {"pref_loss": float(losses.detach().sum()), **metric_sums(rc, rr)}
    if objective == "orpo":
        ratio, rc, rr, log_odds = orpo_odds_ratio(mc, mr, beta=opts.beta)
        nll = -pc.sum()
        loss = nll / max(1, n_chosen_tokens) - ratio.sum() / n_examples
        return loss, {"pref_loss": float(-ratio.detach().sum()), "nll_sum": float(nll.detach()),
                      "log_odds": float(log_odds.sum()), **metric_sums(rc, rr)}
    raise ValueError(f"unknown objective {objective!r}")


def _reference(examples: list[dict], batch: dict, n_seq: int, reference, device) -> torch.Tensor:
    if examples and "ref" in examples[0]:  # precomputed: [chosen..., rejected...] or [completion...]
        k = len(examples[0]["ref"])
        return torch.tensor([e["ref"][j] for j in range(k) for e in examples], dtype=torch.float32, device=device)
    if reference is None:
        raise RuntimeError("no reference log-probabilities (set preference.reference or use a reference-free "
                           "objective)")
    with torch.no_grad():
        return reference(batch, n_seq)


def _kto(opts: PreferenceOptions, policy, batch, examples, reference, n_examples, sparse, autocast):
    n = len(examples)
    with_kl = opts.kto_kl == "batch"
    n_seq = 2 * n if with_kl else n
    desirable = torch.tensor([bool(e["desirable"]) for e in examples])
    if with_kl:  # one no-grad policy pass over all sequences gives the KL ones; one with grad for the answers
        comp = _first_rows(batch, n)
        logps, _ = sequence_logps(policy, comp, n, sparse=sparse, autocast=autocast)
        with torch.no_grad():
            kl_logps = sequence_logps(policy, batch, n_seq, sparse=sparse, autocast=autocast)[0][n:]
    else:
        logps, _ = sequence_logps(policy, batch, n, sparse=sparse, autocast=autocast)
    ref = _reference(examples, batch, n_seq, reference, logps.device)
    if with_kl:
        kl = (kl_logps - ref[n:]).mean()
    else:
        kl = torch.zeros((), device=logps.device)
    losses, rewards = kto_loss(logps, ref[:n], desirable.to(logps.device), kl, beta=opts.beta,
                               desirable_weight=opts.desirable_weight, undesirable_weight=opts.undesirable_weight)
    d = desirable.to(rewards.device)
    m = {"pref_loss": float(losses.detach().sum()), "rewards_chosen": float(rewards[d].sum()),
         "rewards_rejected": float(rewards[~d].sum()), "n_desirable": float(d.sum()), "kl": float(kl) * n}
    return losses.sum() / n_examples, m


def _first_rows(batch: dict, n: int) -> dict:
    """The first ``n`` sequences of a batch (padded rows, or the leading segments of a packed row)."""
    if "segments" not in batch:
        return {k: v[:n] for k, v in batch.items()}
    seg = batch["segments"][0]
    end = int((seg < n).sum())
    out = {k: v[:, :end] for k, v in batch.items() if k not in ("cu_seq_lens_q", "cu_seq_lens_k")}
    if "cu_seq_lens_q" in batch:
        out["cu_seq_lens_q"] = out["cu_seq_lens_k"] = batch["cu_seq_lens_q"][:n + 1]
    return out
