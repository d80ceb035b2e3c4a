"""The optimisation loop: a plain PyTorch loop driven by ``accelerate``.

Loss normalisation (the contract): every optimizer step minimises
``sum of token cross-entropy over loss-bearing tokens / number of loss-bearing
tokens in the whole global batch``, across micro-batches *and* processes. Each
process knows the whole global batch (the data order is deterministic), so the
denominator is exact without a collective, and 1 process with gradient
accumulation k equals k processes. This avoids the per-micro-batch mean bug of
transformers#34191 / LLaMA-Factory#7443.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from polyinstruct.templates.collate import PackedCollator, PaddedCollator
from polyinstruct.templates.labels import IGNORE_INDEX
from polyinstruct.train.batching import BatchPlan
from polyinstruct.train.checkpoint import save_best, save_checkpoint
from polyinstruct.train.config import TrainConfig
from polyinstruct.train.tracking import MetricsSink

log = logging.getLogger(__name__)


@dataclass
class LoopState:
    """Everything besides weights/optimizer needed to continue exactly; saved in state.json."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    tokens: int = 0
    loss_tokens: int = 0
    wall_time_s: float = 0.0
    flops: float = 0.0
    best_val_loss: float | None = None
    best_step: int | None = None
    finished_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def token_ce_sum(logits: torch.Tensor, labels: torch.Tensor, skip: int = 0) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled positions (fp32).

    ``skip`` drops leading virtual-token logits that prompt/P-tuning prepend.
    """
    if skip:
        logits = logits[:, skip:]
    logits = logits[:, :-1]
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    return F.cross_entropy(logits[keep].float(), target[keep], reduction="sum")


def token_ce_by_row(logits: torch.Tensor, labels: torch.Tensor, skip: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (CE sum, token count), for per-language validation loss."""
    if skip:
        logits = logits[:, skip:]
    logits, target = logits[:, :-1].float(), labels[:, 1:]
    ce = F.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
    keep = (target != IGNORE_INDEX).float()
    return (ce * keep).sum(1), keep.sum(1)


def accepts_boolean_logits_to_keep(model) -> bool:
    """True when the model's forward takes ``logits_to_keep`` and transformers supports a boolean
    [batch, seq] mask for it (5.x ``slice_logits_to_keep``)."""
    import inspect

    try:
        from transformers.modeling_utils import slice_logits_to_keep
    except ImportError:
        return False
    if "boolean" not in (slice_logits_to_keep.__doc__ or ""):
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


class Loop:
    """Runs optimizer steps from a ``LoopState`` until the epoch/step/token budget is spent."""

    def __init__(self, cfg: TrainConfig, accelerator, model, optimizer, scheduler, train: list[dict],
                 val: list[dict], plan: BatchPlan, total_steps: int, run_dir: Path, sink: MetricsSink,
                 pad_id: int, skip_logits: int, flops_per_token: Callable[[float], float],
                 progress: bool = False, export: Callable[[Path], None] | None = None):
        self.export = export  # writes the peer-loadable weights into each checkpoint folder
        self.cfg, self.acc, self.model, self.opt, self.sched = cfg, accelerator, model, optimizer, scheduler
        self.train, self.val, self.plan, self.total_steps = train, val, plan, total_steps
        self.run_dir, self.sink, self.pad_id, self.skip = run_dir, sink, pad_id, skip_logits
        self.flops_per_token = flops_per_token
        self.lengths = [e["length"] for e in train]
        self.padded = PaddedCollator(pad_id)
        self.collate = PackedCollator() if cfg.packing else self.padded
        self.progress = progress and accelerator.is_main_process
        self.ckpt_root = run_dir / "checkpoints"
        from polyinstruct.train.attention import PACKED_ATTENTION

        impl = getattr(accelerator.unwrap_model(model).config, "_attn_implementation", None)
        self.example_bounds = bool(cfg.packing) and impl == PACKED_ATTENTION
        self.sparse_logits = skip_logits == 0 and accepts_boolean_logits_to_keep(accelerator.unwrap_model(model))
        # DeepSpeed divides the loss by its accumulation steps itself; plain/DDP runs pass 1.
        self.loss_scale = accelerator.num_processes * accelerator.gradient_accumulation_steps

    # ---- one optimizer step -------------------------------------------------
    def _batch(self, idx: list[int]) -> dict[str, torch.Tensor]:
        exs = [self.train[i] for i in idx]
        b = self.collate(exs)
        if self.example_bounds:  # packed rows: attention runs per example (train/attention.py)
            from polyinstruct.train.attention import boundaries

            b["cu_seq_lens_q"] = b["cu_seq_lens_k"] = boundaries(b["position_ids"])
        return {k: v.to(self.acc.device) for k, v in b.items()}

    def _forward_ce(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch.pop("labels")
        if self.sparse_logits:
            # Project only positions that predict a labelled token: the LM head (often the largest
            # matmul, and the largest activation) is skipped on prompts and padding.
            keep = torch.zeros_like(labels, dtype=torch.bool)
            keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
            with self.acc.autocast():
                logits = self.model(**batch, use_cache=False, logits_to_keep=keep).logits
            target = labels[:, 1:][keep[:, :-1]]
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target, reduction="sum")
        with self.acc.autocast():
            out = self.model(**batch, use_cache=False)
        return token_ce_sum(out.logits, labels, self.skip)

    def step(self, st: LoopState, perm: list[int]) -> dict[str, float]:
        examples = self.plan.step_examples(st.epoch, st.step_in_epoch, perm)
        micro = self.plan.micro_batches(examples, self.lengths)
        mine = self.plan.for_rank(micro, self.acc.process_index)
        n_loss = sum(self.train[i]["num_loss_tokens"] for i in examples)
        n_tok = sum(self.lengths[i] for i in examples)
        self.model.train()
        ce_total = torch.zeros((), device=self.acc.device)
        for j, mb in enumerate(mine):
            sync = j == len(mine) - 1
            with nullcontext() if sync else self.acc.no_sync(self.model):
                ce = self._forward_ce(self._batch(mb or examples[:1]))
                if not mb:  # this process has no micro-batch left: a zero-gradient pass keeps DDP in step
                    ce = ce * 0.0
                self.acc.backward(ce * (self.loss_scale / n_loss))
                ce_total += ce.detach()
        grad_norm = None
        if self.cfg.max_grad_norm:
            gn = self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
            grad_norm = float(gn) if gn is not None else None
        self.opt.step()
        if self.cfg.method == "adalora":  # peft's AdaLoRA reallocates ranks between step and zero_grad
            self.acc.unwrap_model(self.model).base_model.update_and_allocate(st.step)
        lr = self.sched.get_last_lr()[0]
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        loss = float(self.acc.reduce(ce_total, reduction="sum")) / n_loss
        st.step += 1
        st.step_in_epoch += 1
        st.tokens += n_tok
        st.loss_tokens += n_loss
        st.flops += self.flops_per_token(n_tok / max(1, len(examples))) * n_tok
        out = {"loss": loss, "lr": lr, "step_tokens": n_tok, "step_loss_tokens": n_loss}
        if grad_norm is not None:
            out["grad_norm"] = grad_norm
        return out

    # ---- evaluation ---------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation loss per loss-bearing token, overall and per language."""
        self.model.eval()
        order = sorted(range(len(self.val)), key=lambda i: -self.val[i]["length"])
        mine = order[self.acc.process_index::self.acc.num_processes]
        langs = sorted({str(e.get("language") or "") for e in self.val})
        lang_idx = {l: k for k, l in enumerate(langs)}
        sums = torch.zeros(len(langs), 2, dtype=torch.float64, device=self.acc.device)
        bs = self.cfg.eval_batch_size
        for s in range(0, len(mine), bs):
            exs = [self.val[i] for i in mine[s:s + bs]]
            b = {k: v.to(self.acc.device) for k, v in self.padded(exs).items()}
            labels = b.pop("labels")
            with self.acc.autocast():
                logits = self.model(**b, use_cache=False).logits
            ce, cnt = token_ce_by_row(logits, labels, self.skip)
            for r, e in enumerate(exs):
                k = lang_idx[str(e.get("language") or "")]
                sums[k, 0] += ce[r].double()
                sums[k, 1] += cnt[r].double()
        sums = self.acc.reduce(sums, reduction="sum")
        out = {"val_loss": float(sums[:, 0].sum() / sums[:, 1].sum().clamp(min=1))}
        if len(langs) > 1 or langs[0]:
            for l, k in lang_idx.items():
                if sums[k, 1] > 0:
                    out[f"val_loss_{l or 'unknown'}"] = float(sums[k, 0] / sums[k, 1])
        return out

    # ---- the loop -----------------------------------------------------------
    def _budget_spent(self, st: LoopState) -> str | None:
        c = self.cfg
        if c.max_tokens and st.tokens >= c.max_tokens:
            return "max_tokens"
        if c.max_loss_tokens and st.loss_tokens >= c.max_loss_tokens:
            return "max_loss_tokens"
        if st.step >= self.total_steps:
            return "max_steps" if c.max_steps and c.max_steps == self.total_steps else "epochs"
        return None

    def _save(self, st: LoopState) -> None:
        save_checkpoint(self.acc, self.model, self.opt, self.sched, st.to_dict(), self.ckpt_root, self.cfg.keep_last,
                        export=self.export)

    def _eval_and_track_best(self, st: LoopState, epoch_f: float) -> None:
        if not self.val:
            return
        row = self.evaluate()
        if self.cfg.select_best and (st.best_val_loss is None or row["val_loss"] < st.best_val_loss):
            st.best_val_loss, st.best_step = row["val_loss"], st.step
            save_best(self.acc, self.model, {"step": st.step, "val_loss": row["val_loss"]}, self.ckpt_root)
        self.sink.log({"step": st.step, "epoch": round(epoch_f, 4), **row})
        log.info("step %d: %s", st.step, ", ".join(f"{k}={v:.4f}" for k, v in row.items()))

    def run(self, st: LoopState) -> LoopState:
        cfg, spe = self.cfg, self.plan.steps_per_epoch
        bar = None
        if self.progress:
            from polyinstruct.progress import progress_bar

            bar = progress_bar(self.total_steps, initial=st.step, desc="train")
        t_prev = time.perf_counter()
        tok_window, window_t = 0, 0.0
        while st.finished_reason is None:
            if st.step_in_epoch >= spe:
                st.epoch, st.step_in_epoch = st.epoch + 1, 0
            perm = self.plan.permutation(st.epoch)
            while st.step_in_epoch < spe:
                m = self.step(st, perm)
                now = time.perf_counter()
                dt, t_prev = now - t_prev, now
                st.wall_time_s += dt
                tok_window, window_t = tok_window + m["step_tokens"], window_t + dt
                epoch_f = st.epoch + st.step_in_epoch / spe
                reason = self._budget_spent(st)
                end_of_epoch = st.step_in_epoch >= spe
                if st.step % cfg.log_every == 0 or reason:
                    row = {"step": st.step, "epoch": round(epoch_f, 4), "loss": m["loss"], "lr": m["lr"],
                           "tokens": st.tokens, "loss_tokens": st.loss_tokens,
                           "tokens_per_s": round(tok_window / max(window_t, 1e-9), 2)}
                    if "grad_norm" in m:
                        row["grad_norm"] = m["grad_norm"]
                    row.update(m.get("metrics", {}))  # objective-specific (preference rewards, margins)
                    self.sink.log(row)
                    tok_window, window_t = 0, 0.0
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{m['loss']:.4f}", lr=f"{m['lr']:.2e}",
                                    tok_s=f"{m['step_tokens'] / max(dt, 1e-9):.0f}")
                if (cfg.eval_every and st.step % cfg.eval_every == 0) or (not cfg.eval_every and end_of_epoch) \
                        or reason:
                    self._eval_and_track_best(st, epoch_f)
                if reason:
                    st.finished_reason = reason
                    break
                if (cfg.save_every and st.step % cfg.save_every == 0) or (not cfg.save_every and end_of_epoch):
                    self._save(st)
                t_prev = time.perf_counter()  # checkpoint/eval time is not training time
        if bar is not None:
            bar.close()
        return st


def lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """Multiplier on the peak lr at optimizer step ``s`` (0-based), as in transformers' schedulers."""
    def f(s: int) -> float:
        if warmup and s < warmup:
            return (s + 1) / warmup if kind != "constant" else 1.0
        if kind in ("constant", "constant_with_warmup"):
            return 1.0
        progress = (s - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))
        return max(0.0, 1.0 - progress)
    return f
