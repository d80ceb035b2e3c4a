"""The preference optimisation step inside the SFT loop (``train.loop.Loop``).

Only ``step`` and ``evaluate`` differ: the batch plan, budgets (tokens of both answers), checkpoints,
resume, best-checkpoint selection and metrics sinks are the SFT loop's. A step minimises the mean
per-example loss over the global batch (ORPO adds the chosen tokens' NLL per token), exact under any
micro-batch or process split.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from polyinstruct.train.loop import Loop, LoopState
from polyinstruct.train.preference.batch import collate, sequences
from polyinstruct.train.preference.objective import micro_batch_loss

METRICS = ("rewards_chosen", "rewards_rejected", "rewards_margin", "rewards_accuracy")


class PreferenceLoop(Loop):
    """``Loop`` with the preference objective; ``reference(batch, n_seq)`` gives reference log-probs."""

    def __init__(self, *args, reference=None, **kw):
        super().__init__(*args, **kw)
        self.objective = self.cfg.objective
        self.opts = self.cfg.preference
        self.reference = reference
        self.packed = bool(self.cfg.packing)

    def _pref_batch(self, exs: list[dict]) -> dict[str, torch.Tensor]:
        seqs = sequences(exs, kto_kl=self.objective == "kto" and self.opts.kto_kl == "batch")
        b = collate(seqs, packed=self.packed, pad_id=self.pad_id, example_bounds=self.example_bounds)
        return {k: v.to(self.acc.device) for k, v in b.items()}

    def _loss(self, exs: list[dict], n_examples: int, n_chosen_tokens: int):
        return micro_batch_loss(self.objective, self.opts, self.model, self._pref_batch(exs), exs,
                                reference=self.reference, n_examples=n_examples, n_chosen_tokens=n_chosen_tokens,
                                sparse=self.sparse_logits, autocast=self.acc.autocast)

    def step(self, st: LoopState, perm: list[int]) -> dict[str, float]:
        examples = self.plan.step_examples(st.epoch, st.step_in_epoch, perm)
        micro = self.plan.micro_batches(examples, self.lengths)
        mine = self.plan.for_rank(micro, self.acc.process_index)
        n_ex = len(examples)
        n_loss = sum(self.train[i]["num_loss_tokens"] for i in examples)
        n_tok = sum(self.lengths[i] for i in examples)
        n_chosen = sum(self.train[i].get("chosen_loss_tokens", 0) for i in examples)
        self.model.train()
        total = torch.zeros((), device=self.acc.device)
        sums: dict[str, float] = {}
        for j, mb in enumerate(mine):
            sync = j == len(mine) - 1
            with nullcontext() if sync else self.acc.no_sync(self.model):
                exs = [self.train[i] for i in (mb or examples[:1])]
                loss, m = self._loss(exs, n_ex, n_chosen)
                if not mb:  # no micro-batch left for this process: a zero-gradient pass keeps DDP in step
                    loss, m = loss * 0.0, {k: 0.0 for k in m}  # same metric keys on every process (reduce)
                self.acc.backward(loss * self.loss_scale)
                total += loss.detach()
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + v
        grad_norm = None
        if self.cfg.max_grad_norm:
            gn = self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
            grad_norm = float(gn) if gn is not None else None
        self.opt.step()
        if self.cfg.method == "adalora":
            self.acc.unwrap_model(self.model).base_model.update_and_allocate(st.step)
        lr = self.sched.get_last_lr()[0]
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        loss = float(self.acc.reduce(total, reduction="sum"))
        st.step += 1
        st.step_in_epoch += 1
        st.tokens += n_tok
        st.loss_tokens += n_loss
        st.flops += self.flops_per_token(n_tok / max(1, n_ex)) * n_tok
        out = {"loss": loss, "lr": lr, "step_tokens": n_tok, "step_loss_tokens": n_loss,
               "metrics": self._metric_row(sums, n_ex)}
        if grad_norm is not None:
            out["grad_norm"] = grad_norm
        return out

    def _metric_row(self, sums: dict[str, float], n_ex: int) -> dict[str, float]:
        keys = list(sums)
        t = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=self.acc.device)
        t = self.acc.reduce(t, reduction="sum") if keys else t
        s = dict(zip(keys, t.tolist()))
        if self.objective == "kto":
            nd = s.get("n_desirable", 0.0)
            out = {"kl": s.get("kl", 0.0) / n_ex}
            if nd:
                out["rewards_chosen"] = s["rewards_chosen"] / nd
            if n_ex - nd:
                out["rewards_rejected"] = s["rewards_rejected"] / (n_ex - nd)
            return out
        out = {k: s[k] / n_ex for k in METRICS if k in s}
        if "log_odds" in s:
            out["log_odds"] = s["log_odds"] / n_ex
        return out

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation preference loss (mean per example), reward accuracy, per language loss."""
        self.model.eval()
        order = list(range(len(self.val)))[self.acc.process_index::self.acc.num_processes]
        langs = sorted({str(e.get("language") or "") for e in self.val})
        idx = {l: k for k, l in enumerate(langs)}
        acc = torch.zeros(len(langs), 3, dtype=torch.float64, device=self.acc.device)  # loss, n, correct
        bs = self.cfg.eval_batch_size
        for s in range(0, len(order), bs):
            exs = [self.val[i] for i in order[s:s + bs]]
            for e in exs:  # per example: its own loss and reward margin
                loss, m = self._loss([e], 1, max(1, e.get("chosen_loss_tokens", 1)))
                k = idx[str(e.get("language") or "")]
                acc[k, 0] += float(loss)
                acc[k, 1] += 1
                acc[k, 2] += m.get("rewards_accuracy", 0.0)
        acc = self.acc.reduce(acc, reduction="sum")
        n = float(acc[:, 1].sum().clamp(min=1))
        out = {"val_loss": float(acc[:, 0].sum()) / n}
        if self.objective != "kto":
            out["val_rewards_accuracy"] = float(acc[:, 2].sum()) / n
        if len(langs) > 1 or langs[0]:
            for l, k in idx.items():
                if acc[k, 1] > 0:
                    out[f"val_loss_{l or 'unknown'}"] = float(acc[k, 0] / acc[k, 1])
        return out
