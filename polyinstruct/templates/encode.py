"""Encoding rendered segments into token ids, run by run (see polyinstruct.templates.tokenize).

The rendered segments are merged into *runs* (maximal pieces with the same label), and each
run is encoded on its own, so no token straddles the prompt/answer boundary; training
(``tokenize``) and inference (``ChatTemplate.encode_prompt``) both encode through here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from polyinstruct.errors import ConfigError
from polyinstruct.templates.spec import Segment

log = logging.getLogger(__name__)


def tokenizer_adds_bos(tok: Any) -> bool:
    """Whether ``tok(text)`` starts with the BOS token by default (Gemma, Llama: yes; GPT-2, Qwen: no):
    the model was trained with BOS first, so every prompt it scores or continues should have it."""
    bos_id = getattr(tok, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tok("a")["input_ids"]
    return len(ids) > 0 and ids[0] == bos_id


@dataclass(frozen=True)
class TokenizerInfo:
    """Facts about a tokenizer that tokenization depends on, probed once."""

    bos_id: int | None
    adds_bos: bool  # tokenizer(text) starts with BOS by default
    sentinel_id: int | None  # special token used to encode continuations
    sentinel_text: str
    needs_sentinel: bool  # encoding a string alone adds a dummy prefix
    backend_ok: bool = False  # backend_tokenizer.encode_batch_fast gives the same ids as tokenizer()

    @classmethod
    def probe(cls, tok: Any) -> "TokenizerInfo":
        bos_id = getattr(tok, "bos_token_id", None)
        ids = tok("a")["input_ids"]
        adds_bos = bos_id is not None and len(ids) > 0 and ids[0] == bos_id
        sentinel_text, sentinel_id = "", None
        for attr in ("eos_token", "unk_token", "bos_token", "pad_token"):
            text = getattr(tok, attr, None)
            tid = getattr(tok, f"{attr}_id", None)
            if text and tid is not None and tok(text, add_special_tokens=False)["input_ids"] == [tid]:
                sentinel_text, sentinel_id = text, tid
                break
        needs = False
        if sentinel_id is not None:
            for probe in ("a", " a", "\na", "中"):
                alone = tok(probe, add_special_tokens=False)["input_ids"]
                cont = tok(sentinel_text + probe, add_special_tokens=False)["input_ids"][1:]
                if alone != cont:
                    needs = True
                    break
        backend = getattr(tok, "backend_tokenizer", None)
        backend_ok = False
        if backend is not None and hasattr(backend, "encode_batch_fast"):
            probes = ["a", " a b", "\n\nx", "中文 🙂", "  two  ", (sentinel_text or "") + " z", "Hello world."]
            fast = [e.ids for e in backend.encode_batch_fast(probes, add_special_tokens=False)]
            backend_ok = fast == tok(probes, add_special_tokens=False)["input_ids"] and \
                backend.decode_batch(fast, skip_special_tokens=False) == tok.batch_decode(
                    fast, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return cls(bos_id, adds_bos, sentinel_id, sentinel_text, needs, backend_ok)

    def decode(self, tok: Any, seqs: list[list[int]]) -> list[str]:
        if self.backend_ok:
            return tok.backend_tokenizer.decode_batch(seqs, skip_special_tokens=False)
        return tok.batch_decode(seqs, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def encode(self, tok: Any, texts: list[str]) -> list[list[int]]:
        """ids of each text without special tokens; the Rust batch path when it is equivalent."""
        if self.backend_ok:
            return [e.ids for e in tok.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
        return tok(texts, add_special_tokens=False)["input_ids"]

    def add_bos(self, policy: str) -> bool:
        if self.bos_id is None or policy == "never":
            return False
        return policy == "always" or self.adds_bos


@dataclass
class Encoded:
    ids: list[int]
    runs: list[tuple[int, int, bool, int, str]]  # (start, end, trained, turn, text) token spans


def _runs(segs: list[Segment]) -> list[tuple[str, bool, int]]:
    out: list[list] = []
    for s in segs:
        if not s.text:
            continue
        key_turn = s.turn if s.trained else -1
        if out and out[-1][1] == s.trained and out[-1][2] == key_turn:
            out[-1][0] += s.text
        else:
            out.append([s.text, s.trained, key_turn])
    return [(t, tr, turn) for t, tr, turn in out]


def encode_segments(batch: list[list[Segment]], tok: Any, info: TokenizerInfo, bos_policy: str) -> list[Encoded]:
    """Encode many segment lists with one batched tokenizer call."""
    all_runs = [_runs(segs) for segs in batch]
    flat: list[str] = []
    for runs in all_runs:
        for j, (text, _, _) in enumerate(runs):
            flat.append(info.sentinel_text + text if (j and info.needs_sentinel) else text)
    enc = info.encode(tok, flat) if flat else []
    bos = info.add_bos(bos_policy)
    out: list[Encoded] = []
    k = 0
    for runs in all_runs:
        ids: list[int] = [info.bos_id] if bos else []
        spans = []
        for j, (text, trained, turn) in enumerate(runs):
            rid = enc[k]
            k += 1
            if j and info.needs_sentinel:
                if not rid or rid[0] != info.sentinel_id:  # pragma: no cover - tokenizer contract broken
                    raise ConfigError(f"tokenizer did not keep the sentinel {info.sentinel_text!r} as one token",
                                      field="tokenizer")
                rid = rid[1:]
            spans.append((len(ids), len(ids) + len(rid), trained, turn, text))
            ids.extend(rid)
        out.append(Encoded(ids, spans))
    return out
