"""Per-example attention inside packed rows, without a dense row-by-row mask.

A packed micro-batch is one row holding several examples (``PackedCollator``). transformers
turns the restarted ``position_ids`` into a block-diagonal mask for eager/SDPA, so attention
costs (row length)^2 although only sum(example length^2) of it is used; on CPU there is no
varlen kernel to skip the rest. ``polyinstruct_packed`` is an attention implementation
(registered in transformers' ``AttentionInterface``) that, when the batch carries the example
boundaries (``cu_seq_lens_q``, the flash-attention kwarg name), runs causal SDPA once per
example and concatenates: exactly the unpacked computation, no (row length)^2 mask or scores.
Without boundaries (padded batches, generation) it is plain SDPA.
"""

from __future__ import annotations

import torch

PACKED_ATTENTION = "polyinstruct_packed"
_registered = False


def _attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None,
               **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.pop("cu_seq_lens_q", None)
    kwargs.pop("cu_seq_lens_k", None)
    if cu is None or query.shape[0] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    bounds = cu.tolist()
    sizes = [e - s for s, e in zip(bounds[:-1], bounds[1:]) if e > s]
    # split (not slicing): its backward is one concatenation, where slicing's backward zero-fills a
    # full-size gradient per example and per tensor
    qs, ks, vs = (t.split(sizes, dim=2) for t in (query, key, value))
    outs = [sdpa_attention_forward(module, q, k, v, None, dropout=dropout, scaling=scaling, is_causal=True)[0]
            for q, k, v in zip(qs, ks, vs)]
    return torch.cat(outs, dim=1), None


def register() -> str:
    """Register ``polyinstruct_packed`` with transformers (idempotent); returns its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(PACKED_ATTENTION, _attention)
        AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)
        _registered = True
    return PACKED_ATTENTION


def boundaries(position_ids: torch.Tensor) -> torch.Tensor:
    """``cu_seq_lens`` of a packed row: offsets where ``position_ids`` restart at 0, then the row length."""
    pos = position_ids[0]
    starts = torch.nonzero(pos == 0).flatten()
    return torch.cat([starts, torch.tensor([pos.numel()], device=pos.device)]).to(torch.int32)
