"""Which examples go into which optimizer step, micro-batch and process.

The data order is a pure function of (seed, epoch, step): a seeded permutation
per epoch cut into global batches. That makes resuming exact (no sampler state
to save beyond the step) and makes 1 process with gradient accumulation k and k
processes without it see exactly the same micro-batches.

Inside one global batch the examples are sorted by length before being cut into
micro-batches. The optimizer step sees the same examples either way (the loss
is normalised over the whole global batch), but micro-batches of similar length
waste far less compute on padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

IGNORE = -100


@dataclass(frozen=True)
class BatchPlan:
    n_examples: int
    global_batch: int
    micro_batch: int
    world_size: int = 1
    seed: int = 42

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
        g = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
        return torch.randperm(self.n_examples, generator=g).tolist()

    def step_examples(self, epoch: int, step_in_epoch: int, perm: list[int] | None = None) -> list[int]:
        perm = perm if perm is not None else self.permutation(epoch)
        s = step_in_epoch * self.global_batch
        return perm[s:s + self.global_batch]

    def micro_batches(self, examples: list[int], lengths: Sequence[int]) -> list[list[int]]:
        """All micro-batches of one step, length-sorted (longest first), in a fixed order."""
        ordered = sorted(examples, key=lambda i: (-lengths[i], i))
        return [ordered[i:i + self.micro_batch] for i in range(0, len(ordered), self.micro_batch)]

    def for_rank(self, micro: list[list[int]], rank: int) -> list[list[int]]:
        """This process's share: micro-batch j goes to rank j % world; [] means a no-op pass."""
        mine = [mb for j, mb in enumerate(micro) if j % self.world_size == rank]
        return mine + [[]] * (self.grad_accum - len(mine))


def loss_tokens(labels: Sequence[int]) -> int:
    """Tokens that carry loss after the causal shift (label at position t>=1)."""
    return sum(1 for x in labels[1:] if x != IGNORE)


def collate_padded(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch with an attention mask; labels -100 on padding."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for r, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[r, :n] = torch.as_tensor(e["input_ids"])
        labels[r, :n] = torch.as_tensor(e["labels"])
        mask[r, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def collate_packed(examples: list[dict]) -> dict[str, torch.Tensor]:
    """One row of concatenated examples; position_ids restart per example.

    transformers detects the restarts and applies a block-diagonal causal mask
    (or FlashAttention varlen), so examples never attend to each other. The
    first token of each example is unlabelled so no loss crosses a boundary.
    """
    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []
    for e in examples:
        n = len(e["input_ids"])
        ids.extend(e["input_ids"])
        lab = list(e["labels"])
        lab[0] = IGNORE
        labels.extend(lab)
        pos.extend(range(n))
    t = lambda x: torch.tensor([x], dtype=torch.long)  # noqa: E731
    return {"input_ids": t(ids), "labels": t(labels), "position_ids": t(pos)}
