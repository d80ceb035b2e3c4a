"""Preference micro-batches and sequence log-probabilities.

A micro-batch of n pairs is 2n sequences: the n chosen then the n rejected. Padded, they are rows of
one [2n, longest] batch; packed (``packing``), they are segments of one row with per-example attention
(``train/attention.py``), so no token attends across sequences and the log-probabilities equal the
padded ones (tests/train/test_preference_train.py). ``sequence_logps`` sums each sequence's labelled
token log-probabilities, projecting only labelled positions through the LM head where the model
allows it (as the SFT loop does).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from polyinstruct.templates.collate import PackedCollator, PaddedCollator
from polyinstruct.templates.labels import IGNORE_INDEX


def sequences(examples: Sequence[dict], kto_kl: bool = False) -> list[dict]:
    """The sequences of a micro-batch in model order: chosen then rejected (pairs), or completions
    then, with ``kto_kl``, the mismatched KL sequences (prompt i + answer i+1 of the micro-batch)."""
    if examples and "chosen" in examples[0]:
        return [e["chosen"] for e in examples] + [e["rejected"] for e in examples]
    seqs = [e["completion"] for e in examples]
    if kto_kl:
        n = len(examples)
        for i, e in enumerate(examples):
            o = examples[(i + 1) % n]
            p, q = e["prompt_len"], o["prompt_len"]
            ids = e["completion"]["input_ids"][:p] + o["completion"]["input_ids"][q:]
            labels = [IGNORE_INDEX] * p + o["completion"]["labels"][q:]
            seqs.append({"input_ids": ids, "labels": labels})
    return seqs


def collate(seqs: Sequence[dict], *, packed: bool, pad_id: int, example_bounds: bool) -> dict[str, torch.Tensor]:
    """Padded rows, or one packed row carrying ``segments`` (the sequence index of every token) and,
    with ``example_bounds``, ``cu_seq_lens_q/k`` for per-example attention."""
    if not packed:
        return PaddedCollator(pad_id)(seqs)
    b = PackedCollator()(seqs)
    lens = [len(s["input_ids"]) for s in seqs]
    b["segments"] = torch.repeat_interleave(torch.arange(len(seqs)), torch.tensor(lens))[None]
    if example_bounds:
        cu = torch.tensor([0] + lens).cumsum(0).to(torch.int32)
        b["cu_seq_lens_q"] = b["cu_seq_lens_k"] = cu
    return b


def sequence_logps(model, batch: dict[str, Any], n_seq: int, *, sparse: bool = False, autocast=None,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probability of each sequence's labelled tokens [n_seq] fp32, labelled token counts).

    ``batch`` is not modified. ``sparse``: pass a boolean ``logits_to_keep`` so only labelled positions
    are projected through the LM head.
    """
    b = dict(batch)
    labels = b.pop("labels")
    seg = b.pop("segments", None)
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    if seg is None:
        seq_idx = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(keep)[keep]
    else:
        seq_idx = seg[:, 1:][keep]
    ctx = autocast() if autocast is not None else torch.autocast("cpu", enabled=False)
    if sparse:
        mask = torch.zeros_like(labels, dtype=torch.bool)
        mask[:, :-1] = keep
        with ctx:
            logits = model(**b, use_cache=False, logits_to_keep=mask).logits
        logits = logits.reshape(-1, logits.shape[-1])
    else:
        with ctx:
            logits = model(**b, use_cache=False).logits
        skip = logits.shape[1] - labels.shape[1]  # prompt-learning virtual tokens come first
        logits = logits[:, skip:-1][keep]
    tok = -F.cross_entropy(logits.float(), target[keep], reduction="none")
    sums = torch.zeros(n_seq, device=tok.device, dtype=torch.float32).index_add(0, seq_idx, tok)
    counts = torch.bincount(seq_idx, minlength=n_seq).to(torch.float32)
    return sums, counts
