"""Train/evaluation overlap: no evaluation prompt may (nearly) repeat a training instruction.

For every evaluation prompt and every training text of the same language we compute

- ``exact``: the texts are equal after normalisation (NFKC, case folding, punctuation
  dropped, whitespace collapsed);
- ``containment``: the share of the evaluation prompt's n-grams that also occur in the
  training text: word bigrams for space-separated languages, character trigrams for
  Chinese, Japanese and Korean (no spaces between words);
- ``similarity``: TF-IDF cosine similarity of character n-grams (3-5 characters inside
  words; 1-3 characters for CJK), with inverse document frequencies from the compared
  texts themselves. Words frequent in the collection ("what", "difference", "write")
  weigh little, content words weigh a lot, and inflected forms still match ("vaccine" /
  "vaccines"), so a reworded near-duplicate ("How does a vaccine work?" / "How do
  vaccines actually work?") scores high while two prompts sharing only a frame ("What
  is the difference between ...") score low.

A pair is flagged when ``exact``, or ``similarity >= SIMILARITY_THRESHOLD``, or when at
least ``MIN_NGRAMS`` n-grams are compared and ``containment >= CONTAINMENT_THRESHOLD``.
The thresholds flag every leak listed in the audit of the embedded data (docs/experiments.md,
"Evaluation data"); ``check_embedded`` also returns the nearest unflagged pairs for a
person to read.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from polyinstruct.lang.scripts import CJK, script_regex

_CJK = script_regex(*CJK)

SIMILARITY_THRESHOLD = 0.5
CONTAINMENT_THRESHOLD = 0.75
MIN_NGRAMS = 4


def normalize_text(text: str) -> str:
    """NFKC, case-folded, punctuation dropped, whitespace collapsed."""
    t = unicodedata.normalize("NFKC", text).casefold()
    t = "".join(ch if (ch.isalnum() or ch.isspace()) else " " for ch in t)
    return " ".join(t.split())


def is_cjk(text: str) -> bool:
    """More than 30% of the letters are CJK characters (words are not space-separated)."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(bool(_CJK.match(c)) for c in letters) / len(letters) > 0.3


def ngrams(text: str) -> set:
    """Word bigrams (the word itself for one-word texts), or character trigrams for CJK text."""
    norm = normalize_text(text)
    if is_cjk(norm):
        s = norm.replace(" ", "")
        return {s[i:i + 3] for i in range(max(1, len(s) - 2))} if s else set()
    words = norm.split()
    if len(words) < 2:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + 2]) for i in range(len(words) - 1)}


def char_grams(text: str) -> Counter:
    """Character n-gram counts: 3-5 inside space-padded words, or 1-3 over CJK text."""
    norm = normalize_text(text)
    c: Counter = Counter()
    if is_cjk(norm):
        s = norm.replace(" ", "")
        for k in (1, 2, 3):
            c.update(s[i:i + k] for i in range(len(s) - k + 1))
        return c
    for w in norm.split():
        w = f" {w} "
        for k in (3, 4, 5):
            c.update(w[i:i + k] for i in range(max(1, len(w) - k + 1)))
    return c


def _tfidf_matrix(docs: list[Counter]):
    """Row-normalised TF-IDF matrix (sublinear tf, smoothed idf), one row per document."""
    import numpy as np

    vocab: dict[str, int] = {}
    for d in docs:
        for g in d:
            vocab.setdefault(g, len(vocab))
    m = np.zeros((len(docs), max(1, len(vocab))), dtype=np.float32)
    for i, d in enumerate(docs):
        for g, c in d.items():
            m[i, vocab[g]] = 1 + math.log(c)
    df = (m > 0).sum(axis=0)
    m *= (np.log((len(docs) + 1) / (df + 1)) + 1).astype(np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1, norms)


@dataclass
class OverlapPair:
    language: str
    eval_id: str
    train_id: str
    exact: bool
    containment: float
    n_ngrams: int
    similarity: float
    eval_text: str
    train_text: str

    @property
    def flagged(self) -> bool:
        return (self.exact or self.similarity >= SIMILARITY_THRESHOLD
                or (self.n_ngrams >= MIN_NGRAMS and self.containment >= CONTAINMENT_THRESHOLD))

    @property
    def score(self) -> float:
        return 1.0 if self.exact else self.similarity

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flagged": self.flagged}


def compare(language: str, evals: Iterable[tuple[str, str]], train: Iterable[tuple[str, str]], *,
            floor: float = 0.3) -> list[OverlapPair]:
    """(eval, train) pairs of one language that are flagged or have ``similarity >= floor``,
    most similar first."""
    import numpy as np

    evals, train = list(evals), list(train)
    m = _tfidf_matrix([char_grams(t) for _, t in evals + train])
    sims = m[:len(evals)] @ m[len(evals):].T
    by_norm: dict[str, list[int]] = {}
    by_gram: dict[Any, list[int]] = {}
    for j, (_tid, ttext) in enumerate(train):
        by_norm.setdefault(normalize_text(ttext), []).append(j)
        for g in ngrams(ttext):
            by_gram.setdefault(g, []).append(j)
    out = []
    for i, (eid, etext) in enumerate(evals):
        en, eg = normalize_text(etext), ngrams(etext)
        shared = Counter(j for g in eg for j in by_gram.get(g, ()))
        exact = set(by_norm.get(en, ())) if en else set()
        cand = set(np.nonzero(sims[i] >= floor)[0].tolist()) | exact | {
            j for j, k in shared.items() if len(eg) >= MIN_NGRAMS and k / len(eg) >= CONTAINMENT_THRESHOLD}
        for j in cand:
            tid, ttext = train[j]
            out.append(OverlapPair(language, eid, tid, j in exact, round(shared.get(j, 0) / len(eg), 4) if eg else 0.0,
                                   len(eg), round(float(sims[i, j]), 4), etext, ttext))
    out.sort(key=lambda p: (-p.score, -p.containment))
    return out


def user_text(conv: Any) -> str:
    """The user turns of a ``Conversation`` (or its dict form), joined by newlines."""
    msgs = conv.messages if hasattr(conv, "messages") else conv["messages"]
    pairs = [(m.role, m.content) if hasattr(m, "role") else (m["role"], m["content"]) for m in msgs]
    return "\n".join(c for r, c in pairs if r == "user")


def check_embedded(data_dir: Any = None, *, nearest: int = 5) -> dict[str, Any]:
    """The embedded evaluation prompts against the embedded training data, per language.

    Training texts: the instructions (user turns) and the parallel sentences of that
    language (English sentences for English), since translation data built from them is
    training data too. Returns ``{"languages", "flagged": [OverlapPair], "nearest":
    {lang: [OverlapPair]}}``.
    """
    from polyinstruct.data import embedded

    flagged: list[OverlapPair] = []
    near: dict[str, list[OverlapPair]] = {}
    langs = embedded.instruction_languages(data_dir)
    parallel = embedded.parallel_languages(data_dir)
    for lang in langs:
        evals = [(c.id, user_text(c)) for c in embedded.load_eval_prompts(lang, data_dir)]
        train = [(c.id, user_text(c)) for c in embedded.load_instructions(lang, data_dir)]
        if lang in parallel:
            train += [(f"{pid}.{lang}", xx) for pid, _en, xx in embedded.load_parallel_pairs(lang, data_dir)]
        elif lang == "en" and parallel:
            train += [(f"{pid}.en", en) for pid, en, _xx in embedded.load_parallel_pairs(parallel[0], data_dir)]
        pairs = compare(lang, evals, train)
        flagged += [p for p in pairs if p.flagged]
        near[lang] = [p for p in pairs if not p.flagged][:nearest]
    return {"languages": langs, "flagged": flagged, "nearest": near}
