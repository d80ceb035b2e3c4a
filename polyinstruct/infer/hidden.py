"""Sentence vectors from a causal LM's hidden states: every layer mean-pooled over a sentence's tokens.

Shared by ``analyze alignment`` (polyinstruct/analysis/alignment.py, layer-wise cross-lingual
alignment) and the cross-lingual train/eval overlap check (polyinstruct/evalsets/overlap.py).
Pooling runs batched, length-sorted, under ``torch.inference_mode()``, and each batch's states
are reduced to one vector per sentence and layer as soon as the model returns them, so memory
holds ``layers x sentences x hidden`` floats.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from polyinstruct.errors import PolyinstructError


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    """``auto`` -> bfloat16 where the device computes it natively, else float32 (models/hardware.py)."""
    if dtype == "auto":
        from polyinstruct.models.hardware import auto_dtype

        return auto_dtype(device)
    if dtype not in ("float32", "bfloat16"):
        raise PolyinstructError(f"dtype must be auto, float32 or bfloat16, got {dtype!r}")
    return dtype


def load_model_and_tokenizer(model_or_run: str | os.PathLike, *, device: str = "cpu",
                             dtype: str = "auto") -> tuple[Any, Any, str]:
    """A model for hidden states from a path, packaged name, hub id or run directory (adapters merged).
    ``dtype="auto"`` is bfloat16 on CPUs with AMX/AVX512-BF16 (4x faster here, measures within the
    tolerance docs/analysis.md states) and float32 elsewhere; pooled states are returned as float32."""
    from polyinstruct.infer.hf import HFBackend
    from polyinstruct.models.resolve import resolve_model_path

    dtype = resolve_dtype(dtype, device)
    path = resolve_model_path(model_or_run)
    backend = HFBackend.from_path(path, template="tulu", device=device, dtype=dtype, merge=True)
    model = backend.model
    if hasattr(model, "merge_and_unload"):  # an unmerged peft wrapper
        model = model.merge_and_unload()
    return model.eval(), backend.tokenizer, path


def pooled_hidden_states(model: Any, tokenizer: Any, sentences: Sequence[str], *, batch_size: int = 32,
                         max_length: int = 128, progress: bool = False, skip_first: bool = False) -> np.ndarray:
    """Mean-pooled hidden states, shape ``(layers + 1, len(sentences), hidden)`` (index 0: embeddings).

    ``skip_first``: leave the first token (the BOS, when the tokenizer adds one) out of the mean; it
    still conditions the others. Its state is an attention sink with a huge norm in models such as
    Gemma, which would otherwise dominate the mean of a short sentence."""
    import torch

    if not sentences:
        raise PolyinstructError("no sentences to embed")
    if batch_size < 1:
        raise PolyinstructError(f"batch_size must be >= 1, got {batch_size}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise PolyinstructError("the tokenizer has neither a pad nor an eos token to pad batches with")
    ids = [tokenizer(s, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
           for s in sentences]
    if any(len(t) == 0 for t in ids):
        raise PolyinstructError("a sentence tokenizes to nothing; remove empty sentences")
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # length-sorted batches: little padding
    out: np.ndarray | None = None
    device = next(model.parameters()).device
    # The decoder alone gives the same hidden states; skipping the LM head saves its vocab-sized matmul.
    body = getattr(model, "base_model", model)
    body = body if body is not None else model
    bar = None
    if progress:
        from polyinstruct.progress import progress_bar

        bar = progress_bar(len(ids), desc="hidden states", unit="sent")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(ids[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # right padding: positions of real tokens are unchanged
                input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            res = body(input_ids=input_ids.to(device), attention_mask=mask.to(device), output_hidden_states=True,
                       use_cache=False)
            states = res.hidden_states
            if out is None:
                out = np.zeros((len(states), len(ids), states[0].shape[-1]), dtype=np.float32)
            pool = mask.clone()
            if skip_first:
                pool[:, 0] = 0
                pool[pool.sum(dim=1) == 0, 0] = 1  # a one-token sentence keeps its token
            m = pool.to(device).unsqueeze(-1).to(states[0].dtype)
            denom = m.sum(dim=1)
            for layer, h in enumerate(states):  # reduce as they come
                out[layer, idx] = ((h * m).sum(dim=1) / denom).float().cpu().numpy()
            del res, states
            if bar is not None:
                bar.update(len(idx))
    if bar is not None:
        bar.close()
    assert out is not None
    return out
