"""Collators, padding-free packing and length-grouped batching.

Batches are dicts of torch tensors to pass as ``model(**batch, use_cache=False)``:

- ``PaddedCollator``: ``input_ids``, ``attention_mask``, ``labels`` of shape
  [batch, longest] (right padding; labels padded with -100). Exact: padding is
  masked and carries no loss.
- ``PackedCollator``: one row, shape [1, total]: ``input_ids``, ``labels``,
  ``position_ids`` restarting at 0 for each example, and no ``attention_mask``.
  transformers (>= 4.54, and 5.x) turns restarted ``position_ids`` into a
  block-diagonal causal mask for eager/SDPA and into FlashAttention varlen
  calls, *only when no cache is used*: call the model with ``use_cache=False``
  (with the cache on, examples leak into each other). ``mask="4d"`` adds an
  explicit additive block-diagonal mask [1, 1, total, total] instead, for code
  paths without that detection (needs ``mask_dtype`` = the model's dtype).

Loss: labels are unshifted ids (-100 = no loss). Shift by one, sum the token
losses over labels != -100 and divide by their count. PackedCollator sets the
first label of every example to -100, so the last token of one example is
never asked to predict the first token of the next (that position is never
used unpacked either, so packed and unpacked losses are identical).
"""

from __future__ import annotations

from polyinstruct.templates.labels import IGNORE_INDEX

import bisect
import random
from typing import Any, Sequence

from polyinstruct.errors import ConfigError



class PaddedCollator:
    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        if pad_token_id is None:
            raise ConfigError("pad_token_id is None: set tokenizer.pad_token (e.g. to the EOS token)",
                              field="pad_token_id")
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        m = self.pad_to_multiple_of
        if m:
            longest = (longest + m - 1) // m * m
        n = len(features)
        input_ids = torch.full((n, longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((n, longest), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            input_ids[i, :k] = torch.as_tensor(f["input_ids"], dtype=torch.long)
            labels[i, :k] = torch.as_tensor(f["labels"], dtype=torch.long)
            attention[i, :k] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class PackedCollator:
    """Concatenate a batch of examples into one row without padding (see module doc)."""

    def __init__(self, mask: str = "position_ids", mask_dtype: Any = None):
        if mask not in ("position_ids", "4d"):
            raise ConfigError(f"mask must be 'position_ids' or '4d', got {mask!r}", field="mask")
        self.mask = mask
        self.mask_dtype = mask_dtype

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        pos: list[int] = []
        lengths: list[int] = []
        for f in features:
            k = len(f["input_ids"])
            if k == 0:
                continue
            ids.extend(f["input_ids"])
            lab = list(f["labels"])
            lab[0] = IGNORE_INDEX
            labels.extend(lab)
            pos.extend(range(k))
            lengths.append(k)
        batch = {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([pos], dtype=torch.long),
        }
        if self.mask == "4d":
            batch["attention_mask"] = block_causal_mask(lengths, self.mask_dtype or torch.float32)
        return batch


def block_causal_mask(lengths: Sequence[int], dtype: Any) -> Any:
    """Additive [1, 1, T, T] mask: 0 where a token may attend (same example, not future), min elsewhere."""
    import torch

    seg = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(list(lengths)))
    total = int(seg.numel())
    allowed = (seg[:, None] == seg[None, :]) & torch.ones(total, total, dtype=torch.bool).tril()
    mask = torch.zeros(total, total, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def pack_best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of example indices, each with total length <= capacity (best-fit decreasing).

    Longest first, each into the open bin with the least room that still fits.
    An example longer than ``capacity`` is an error: truncate or drop it first.
    """
    if capacity <= 0:
        raise ConfigError(f"capacity must be positive, got {capacity}", field="capacity")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[tuple[int, int]] = []  # sorted (remaining capacity, bin index)
    for i in order:
        n = int(lengths[i])
        if n > capacity:
            raise ConfigError(f"example {i} has length {n} > capacity {capacity}; tokenize with "
                              f"max_length <= {capacity}", field="capacity")
        j = bisect.bisect_left(room, (n, -1))
        if j < len(room):
            left, b = room.pop(j)
            bins[b].append(i)
            bisect.insort(room, (left - n, b))
        else:
            bins.append([i])
            bisect.insort(room, (capacity - n, len(bins) - 1))
    return bins


def length_grouped_batches(lengths: Sequence[int], *, batch_size: int | None = None,
                           batch_tokens: int | None = None, seed: int = 0,
                           mega_batch_mult: int = 50) -> list[list[int]]:
    """Batches of indices with similar lengths (less padding), in a seeded random order.

    Give ``batch_size`` (examples per batch) or ``batch_tokens`` (padded tokens per
    batch: batch size x longest member). Indices are shuffled, cut into mega-batches
    of ``mega_batch_mult`` batches, sorted by length inside each, then split; the
    batch with the longest example comes first so memory problems show at step 1.
    """
    if (batch_size is None) == (batch_tokens is None):
        raise ConfigError("give exactly one of batch_size or batch_tokens", field="batch_size")
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    per_mega = (batch_size or max(1, batch_tokens // max(1, max(lengths, default=1)))) * mega_batch_mult
    batches: list[list[int]] = []
    for s in range(0, len(idx), per_mega):
        mega = sorted(idx[s:s + per_mega], key=lambda i: -lengths[i])
        if batch_size is not None:
            batches.extend(mega[k:k + batch_size] for k in range(0, len(mega), batch_size))
            continue
        cur: list[int] = []
        for i in mega:  # descending: the first member is the longest
            if cur and (len(cur) + 1) * lengths[cur[0]] > batch_tokens:
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches
