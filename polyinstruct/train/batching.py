"""Which examples go into which optimizer step, micro-batch and process.

Collation (padded or packed rows) is ``polyinstruct.templates.collate``'s.

The data order is a pure function of (seed, epoch, step): a seeded permutation
per epoch cut into global batches. That makes resuming exact (no sampler state
to save beyond the step) and makes 1 process with gradient accumulation k and k
processes without it see exactly the same micro-batches.

Inside one global batch the examples are sorted by length before being cut into
micro-batches. The optimizer step sees the same examples either way (the loss
is normalised over the whole global batch), but micro-batches of similar length
waste far less compute on padding. Packed micro-batches (one row each, no
padding) are balanced by tokens instead: the longest example first, each into
the micro-batch holding the fewest tokens that still has room. Sorting would put
the longest examples into one row, which only raises the peak memory of that
row; balancing lowers it and evens out the work of data-parallel processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from polyinstruct.templates.labels import IGNORE_INDEX


@dataclass(frozen=True)
class BatchPlan:
    n_examples: int
    global_batch: int
    micro_batch: int
    world_size: int = 1
    seed: int = 42
    group_window: int = 0  # length grouping over this many global batches (0 = off); needs ``lengths``
    balance: bool = False  # packed micro-batches: balanced by tokens instead of sorted by length
    lengths: tuple[int, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def micro_per_step(self) -> int:
        """Micro-batches per optimizer step, across all processes."""
        return math.ceil(self.global_batch / self.micro_batch)

    @property
    def grad_accum(self) -> int:
        """Micro-batches each process runs per optimizer step (derived, never configured)."""
        return math.ceil(self.micro_per_step / self.world_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_examples / self.global_batch)

    def permutation(self, epoch: int) -> list[int]:
        """The epoch's example order; consecutive slices of ``global_batch`` are the steps."""
        g = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
        perm = torch.randperm(self.n_examples, generator=g).tolist()
        if self.group_window and self.lengths is not None:
            perm = self._grouped(perm, g)
        return perm

    def _grouped(self, perm: list[int], g: torch.Generator) -> list[int]:
        """Length grouping (HF ``group_by_length``'s megabatches, at the global-batch level): each
        window of ``group_window`` global batches is sorted by length and cut into global batches,
        then the full batches' order is shuffled (a short last batch stays last). Every example is
        still seen once per epoch; a step's batch holds examples of similar length."""
        assert self.lengths is not None
        gb, w = self.global_batch, self.group_window * self.global_batch
        batches: list[list[int]] = []
        for s in range(0, len(perm), w):
            win = sorted(perm[s:s + w], key=lambda i: (-self.lengths[i], i))
            batches += [win[j:j + gb] for j in range(0, len(win), gb)]
        tail = [batches.pop()] if batches and len(batches[-1]) < gb else []
        order = torch.randperm(len(batches), generator=g).tolist()
        return [i for b in [batches[k] for k in order] + tail for i in b]

    def step_examples(self, epoch: int, step_in_epoch: int, perm: list[int] | None = None) -> list[int]:
        perm = perm if perm is not None else self.permutation(epoch)
        s = step_in_epoch * self.global_batch
        return perm[s:s + self.global_batch]

    def micro_batches(self, examples: list[int], lengths: Sequence[int]) -> list[list[int]]:
        """All micro-batches of one step in a fixed order: length-sorted (longest first), or with
        ``balance`` the same sizes balanced by tokens."""
        ordered = sorted(examples, key=lambda i: (-lengths[i], i))
        if not self.balance:
            return [ordered[i:i + self.micro_batch] for i in range(0, len(ordered), self.micro_batch)]
        n_bins = math.ceil(len(ordered) / self.micro_batch)
        room = [self.micro_batch] * n_bins
        room[-1] = len(ordered) - self.micro_batch * (n_bins - 1)
        bins: list[list[int]] = [[] for _ in range(n_bins)]
        tokens = [0] * n_bins
        for i in ordered:  # longest first, into the lightest micro-batch with room (ties: the first)
            b = min((k for k in range(n_bins) if len(bins[k]) < room[k]), key=lambda k: (tokens[k], k))
            bins[b].append(i)
            tokens[b] += lengths[i]
        return bins

    def for_rank(self, micro: list[list[int]], rank: int) -> list[list[int]]:
        """This process's share: micro-batch j goes to rank j % world; [] means a no-op pass."""
        mine = [mb for j, mb in enumerate(micro) if j % self.world_size == rank]
        return mine + [[]] * (self.grad_accum - len(mine))


def loss_tokens(labels: Sequence[int]) -> int:
    """Tokens that carry loss after the causal shift (label at position t>=1)."""
    return sum(1 for x in labels[1:] if x != IGNORE_INDEX)
