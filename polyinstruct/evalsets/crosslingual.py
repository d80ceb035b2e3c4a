"""Cross-lingual step of the overlap check: translations and paraphrases share no surface.

A text's vector is a causal LM's hidden state at one layer (``polyinstruct.infer.hidden``, the
code ``analyze alignment`` measures with), mean-pooled over the text's first ``max_length``
tokens (32 for Gemma) without the first one: the BOS is an attention sink whose huge state
would dominate a short text's mean. Decoder states share a large common direction (any two
texts have a high raw cosine), so the score of a pair is the cosine of the two vectors after
subtracting a fixed centre: the mean state of 20 of the project's parallel sentences in its six
languages (``centre_sentences``, embedded once per model and layer and cached), so that a
pair's score does not depend on what else is compared. A pair is flagged at
``score >= threshold``.

The calibrated model is the packaged Gemma-3-270m (``CALIBRATED``): layer, threshold and
their precision/recall on held-out translation pairs are in docs/experiments.md ("Evaluation
data"), measured by ``bench/overlap_crosslingual.py``. Another model needs ``layer`` and
``threshold`` given (or measured with that script).

Vectors are cached on disk per model, layer and length limit
(``$POLYINSTRUCT_CACHE_DIR/overlap-vectors/``, numpy arrays read with ``allow_pickle=False``),
keyed by the SHA-256 of each text, so repeated checks embed only new texts.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from polyinstruct.errors import PolyinstructError

log = logging.getLogger(__name__)

# model name -> (layer, threshold, max_length): measured by bench/overlap_crosslingual.py (docs/experiments.md).
CALIBRATED: dict[str, tuple[int, float, int]] = {
    "gemma-3-270m": (13, 0.841, 32),
}
DEFAULT_MODEL = "gemma-3-270m"


CENTRE_PAIRS = 20


def centre_sentences(n: int = CENTRE_PAIRS) -> list[str]:
    """The texts whose mean state is the score's centre: parallel sentences ``sent-001..n`` in every language."""
    from polyinstruct.data import embedded

    out: dict[str, None] = {}
    for lang in embedded.parallel_languages():
        for _, en, xx in embedded.load_parallel_pairs(lang)[:n]:
            out[en] = out[xx] = None
    return list(out)


def torch_module_list() -> type:
    import torch

    return torch.nn.ModuleList


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class VectorCache:
    """Sentence vectors on disk, one ``.npz`` per (model, layer, max_length): ``keys`` (SHA-256 of the
    text, 32 bytes each) and ``vectors`` (float32)."""

    def __init__(self, path: Path):
        self.path = path
        self.vectors: dict[bytes, np.ndarray] = {}
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                for k, v in zip(z["keys"], z["vectors"]):
                    self.vectors[bytes(k)] = v

    def save(self) -> None:
        from polyinstruct.fileio import atomic_open

        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self.vectors), dtype="S32")
        vecs = np.stack(list(self.vectors.values())).astype(np.float32)
        with atomic_open(self.path, "wb", encoding=None) as f:
            np.savez(f, keys=keys, vectors=vecs)


class CrosslingualScorer:
    """Scores (eval, train) text pairs by the centred cosine of their pooled hidden states."""

    def __init__(self, model: str = DEFAULT_MODEL, *, layer: int | None = None, threshold: float | None = None,
                 max_length: int | None = None, batch_size: int = 16, cache_dir: str | Path | None = None,
                 device: str = "cpu"):
        cal = CALIBRATED.get(model)
        if cal is None and (layer is None or threshold is None):
            raise PolyinstructError(
                f"cross-lingual model {model!r} has no calibrated layer and threshold (calibrated: "
                f"{', '.join(CALIBRATED)}); give both --crosslingual-layer and --crosslingual-threshold, measured "
                "with bench/overlap_crosslingual.py")
        self.model_name = model
        self.layer = layer if layer is not None else cal[0]
        self.threshold = threshold if threshold is not None else cal[1]
        self.floor = self.threshold - 0.1  # pairs above this are reported as "nearest" even when not flagged
        self.max_length = max_length or (cal[2] if cal else 64)
        self.batch_size = batch_size
        self.device = device
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._model: Any = None
        self._cache: VectorCache | None = None
        self._centre: np.ndarray | None = None

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_name, "layer": self.layer, "threshold": self.threshold,
                "max_length": self.max_length, "score": "cosine after subtracting the mean state of 120 embedded "
                                                         "parallel sentences"}

    def _load(self) -> None:
        if self._model is not None:
            return
        from polyinstruct.config import cache_dir
        from polyinstruct.infer.hidden import load_model_and_tokenizer

        model, tok, path = load_model_and_tokenizer(self.model_name, device=self.device, dtype="float32")
        n_layers = model.config.get_text_config().num_hidden_layers
        if not 0 <= self.layer <= n_layers:
            raise PolyinstructError(f"layer {self.layer} is out of range for {self.model_name} (0..{n_layers})")
        body = getattr(model, "model", None)
        if body is not None and isinstance(getattr(body, "layers", None), torch_module_list()) \
                and self.layer < len(body.layers):
            # Only the layers up to the one read run: the states below it are the whole model's (the
            # state after the last kept layer is normed, and is not the one read). Saves the rest's compute.
            body.layers = body.layers[:self.layer + 1]
            model.config.get_text_config().num_hidden_layers = self.layer + 1
        self._model = (model, tok)
        tag = hashlib.sha256(f"{Path(path).resolve()}|{self.layer}|{self.max_length}|skip-first".encode()).hexdigest()[:16]
        root = self._cache_dir or (cache_dir() / "overlap-vectors")
        self._cache = VectorCache(root / f"{Path(path).name}-{tag}.npz")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Pooled layer-``layer`` states, ``(len(texts), hidden)`` float32; cached texts are not recomputed."""
        from polyinstruct.infer.hidden import pooled_hidden_states

        self._load()
        assert self._cache is not None
        keys = [_key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in self._cache.vectors))
        if missing:
            model, tok = self._model
            log.info("embedding %d texts with %s (layer %d)", len(missing), self.model_name, self.layer)
            states = pooled_hidden_states(model, tok, missing, batch_size=self.batch_size,
                                          max_length=self.max_length, skip_first=True)[self.layer]
            for t, v in zip(missing, states):
                self._cache.vectors[_key(t)] = v
            self._cache.save()
        return np.stack([self._cache.vectors[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def centre(self) -> np.ndarray:
        """The mean state of the first ``CENTRE_PAIRS`` embedded parallel sentences in all six languages,
        the fixed centre of the score."""
        if self._centre is None:
            self._centre = self.embed(centre_sentences()).mean(axis=0)
        return self._centre

    def unit(self, texts: Sequence[str]) -> np.ndarray:
        v = self.embed(texts) - self.centre()
        n = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.where(n == 0, 1.0, n)

    def scores(self, evals: Sequence[str], train: Sequence[str]) -> np.ndarray:
        """``(len(evals), len(train))`` centred cosines."""
        if not evals or not train:
            return np.zeros((len(evals), len(train)), np.float32)
        return self.unit(evals) @ self.unit(train).T
