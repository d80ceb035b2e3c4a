"""Train/evaluation overlap: no evaluation prompt or reference answer may (nearly) repeat a training text.

Every evaluation text (each prompt and each reference answer) is compared with every training
text (each user and each assistant turn, and each side of a parallel sentence pair), in every
language and file. Surface measures, on all pairs whatever their languages:

- ``exact``: the texts are equal after normalisation (NFKC, traditional Chinese folded to
  simplified with OpenCC's ``t2s`` converter, case folding, punctuation dropped, whitespace
  collapsed);
- ``containment``: the share of the evaluation text's n-grams that also occur in the
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
Translations and paraphrases share no surface: with a cross-lingual model
(``evalsets/crosslingual.py``) a pair is also flagged when the similarity of the two
texts' sentence vectors reaches that model's threshold (``crosslingual`` below). The
thresholds and what each step catches are in docs/experiments.md ("Evaluation data").
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Iterable

from polyinstruct.lang.scripts import CJK, script_regex

_CJK = script_regex(*CJK)

SIMILARITY_THRESHOLD = 0.5
CONTAINMENT_THRESHOLD = 0.75
MIN_NGRAMS = 4


@lru_cache(maxsize=1)
def _t2s() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


def fold_chinese(text: str) -> str:
    """Traditional Chinese characters folded to simplified (OpenCC ``t2s``); other text unchanged."""
    if not any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in text):
        return text
    return _t2s().convert(text)


@lru_cache(maxsize=65536)
def normalize_text(text: str) -> str:
    """NFKC, traditional Chinese folded to simplified, case-folded, punctuation dropped, whitespace collapsed."""
    t = fold_chinese(unicodedata.normalize("NFKC", text)).casefold()
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


def _tf_matrix(docs: list[Counter]) -> Any:
    """Sparse sublinear term frequencies (1 + log count), one row per document."""
    import numpy as np
    from scipy import sparse

    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for i, d in enumerate(docs):
        for g, c in d.items():
            rows.append(i)
            cols.append(vocab.setdefault(g, len(vocab)))
            vals.append(1 + math.log(c))
    return sparse.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)),
                             shape=(len(docs), max(1, len(vocab))))


def _weighted(tf: Any, idf_rows: Any) -> Any:
    """``tf`` weighted by the smoothed idf of the documents ``idf_rows`` (rows of ``tf``), rows L2-normalised."""
    import numpy as np
    from scipy import sparse

    df = np.asarray((idf_rows > 0).sum(axis=0)).ravel()
    m = tf @ sparse.diags((np.log((idf_rows.shape[0] + 1) / (df + 1)) + 1).astype(np.float32))
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return (sparse.diags(1 / np.where(norms == 0, 1, norms)) @ m).tocsr()


def _tfidf_matrix(docs: list[Counter]) -> Any:
    """Row-normalised sparse TF-IDF matrix (sublinear tf, smoothed idf from the documents themselves)."""
    tf = _tf_matrix(docs)
    return _weighted(tf, tf)


def _similarities(evals: list["Text"], train: list["Text"]) -> Any:
    """TF-IDF cosine of every (eval, train) pair, sparse ``(len(evals), len(train))``.

    Inverse document frequencies come from one evaluation set and language at a time: for the
    evaluation texts of language L from one source (file), from those texts and the training texts
    labelled L (all training texts when none is), so that a pair's score does not depend on which
    other evaluation sets are checked in the same run, and a frame frequent in L ("write a short poem about") weighs little however many
    texts of other languages the collection holds. The training texts of every language are then
    compared with those weights: English copied into the French file still matches English."""
    from scipy import sparse

    tf = _tf_matrix([char_grams(t.text) for t in evals + train]).tocsr()
    n = len(evals)
    t_tf = tf[n:]
    out = sparse.lil_matrix((n, len(train)), dtype="float32")
    for lang, source in dict.fromkeys((t.language, t.source) for t in evals):
        ei = [i for i, t in enumerate(evals) if (t.language, t.source) == (lang, source)]
        tj = [n + j for j, t in enumerate(train) if t.language == lang] or list(range(n, n + len(train)))
        idf_rows = tf[ei + tj]
        e_w, t_w = _weighted(tf[ei], idf_rows), _weighted(t_tf, idf_rows)
        sims = (e_w @ t_w.T).tocsr()
        for k, i in enumerate(ei):
            out[i] = sims.getrow(k)
    return out.tocsr()


@dataclass(frozen=True)
class Text:
    """One text of a check: ``part`` is ``prompt``/``reference`` (evaluation) or ``user``/``assistant``
    (with the turn number, ``assistant[1]``) or ``sentence`` (training); ``source`` names its file or set."""

    id: str
    text: str
    language: str = ""
    part: str = "prompt"
    source: str = ""


@dataclass
class OverlapPair:
    language: str  # of the evaluation text
    eval_id: str
    train_id: str
    exact: bool
    containment: float
    n_ngrams: int
    similarity: float
    eval_text: str
    train_text: str
    train_language: str = ""
    eval_part: str = "prompt"
    train_part: str = "user"
    eval_source: str = ""
    train_source: str = ""
    crosslingual: float | None = None  # sentence-vector score when a cross-lingual model ran
    crosslingual_threshold: float | None = None

    @property
    def surface_flagged(self) -> bool:
        return (self.exact or self.similarity >= SIMILARITY_THRESHOLD
                or (self.n_ngrams >= MIN_NGRAMS and self.containment >= CONTAINMENT_THRESHOLD))

    @property
    def flagged(self) -> bool:
        return self.surface_flagged or (self.crosslingual is not None and self.crosslingual_threshold is not None
                                        and self.crosslingual >= self.crosslingual_threshold)

    @property
    def reason(self) -> str:
        """Which measure flagged the pair (the first that did), or ``""``."""
        if self.exact:
            return "exact"
        if self.similarity >= SIMILARITY_THRESHOLD:
            return "similarity"
        if self.n_ngrams >= MIN_NGRAMS and self.containment >= CONTAINMENT_THRESHOLD:
            return "containment"
        return "crosslingual" if self.flagged else ""

    @property
    def score(self) -> float:
        """1 for an exact repeat, else the highest of the similarity and the cross-lingual score."""
        return 1.0 if self.exact else max(self.similarity, self.crosslingual or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flagged": self.flagged, "reason": self.reason, "score": self.score}


def _as_texts(items: Iterable[Any], language: str, part: str) -> list[Text]:
    return [x if isinstance(x, Text) else Text(x[0], x[1], language, part) for x in items]


def compare(language: str, evals: Iterable[Any], train: Iterable[Any], *, floor: float = 0.3,
            crosslingual: Any = None) -> list[OverlapPair]:
    """(eval, train) pairs that are flagged or have ``similarity >= floor``, most similar first.

    ``evals`` and ``train`` are :class:`Text` items or ``(id, text)`` pairs (given ``language``).
    Every pair is compared whatever its languages. ``crosslingual``: a
    :class:`~polyinstruct.evalsets.crosslingual.CrosslingualScorer`; its candidate pairs join
    the surface ones with their score."""
    import numpy as np

    evals, train = _as_texts(evals, language, "prompt"), _as_texts(train, language, "user")
    if not evals or not train:
        return []
    sims = _similarities(evals, train)
    by_norm: dict[str, list[int]] = {}
    by_gram: dict[Any, list[int]] = {}
    for j, t in enumerate(train):
        by_norm.setdefault(normalize_text(t.text), []).append(j)
        for g in ngrams(t.text):
            by_gram.setdefault(g, []).append(j)
    xl_scores, xl_threshold = (None, None)
    if crosslingual is not None:
        xl_scores = crosslingual.scores([t.text for t in evals], [t.text for t in train])
        xl_threshold = crosslingual.threshold
    out = []
    for i, ev in enumerate(evals):
        en, eg = normalize_text(ev.text), ngrams(ev.text)
        row = sims.getrow(i)
        sim_of = dict(zip(row.indices.tolist(), row.data.tolist()))
        shared = Counter(j for g in eg for j in by_gram.get(g, ()))
        exact = set(by_norm.get(en, ())) if en else set()
        cand = {j for j, s in sim_of.items() if s >= floor} | exact | {
            j for j, k in shared.items() if len(eg) >= MIN_NGRAMS and k / len(eg) >= CONTAINMENT_THRESHOLD}
        if xl_scores is not None:
            cand |= set(np.nonzero(xl_scores[i] >= min(xl_threshold, crosslingual.floor))[0].tolist())
        for j in cand:
            tr = train[j]
            out.append(OverlapPair(
                ev.language, ev.id, tr.id, j in exact, round(shared.get(j, 0) / len(eg), 4) if eg else 0.0, len(eg),
                round(float(sim_of.get(j, 0.0)), 4), ev.text, tr.text, tr.language, ev.part, tr.part, ev.source,
                tr.source, None if xl_scores is None else round(float(xl_scores[i, j]), 4), xl_threshold))
    out.sort(key=lambda p: (not p.flagged, -p.score, -p.containment))
    return out


def _messages(conv: Any) -> list[tuple[str, str]]:
    msgs = conv.messages if hasattr(conv, "messages") else conv["messages"]
    return [(m.role, m.content) if hasattr(m, "role") else (m["role"], m["content"]) for m in msgs]


def user_text(conv: Any) -> str:
    """The user turns of a ``Conversation`` (or its dict form), joined by newlines."""
    return "\n".join(c for r, c in _messages(conv) if r == "user")


def eval_texts(conv: Any, language: str = "", source: str = "") -> list[Text]:
    """An evaluation item's prompt (its user turns) and reference answer (its assistant turns), when present."""
    rid = conv.id if hasattr(conv, "id") else str(conv.get("id", ""))
    language = language or (conv.language if hasattr(conv, "language") else conv.get("language")) or ""
    msgs = _messages(conv)
    out = []
    for part, role in (("prompt", "user"), ("reference", "assistant")):
        text = "\n".join(c for r, c in msgs if r == role and c.strip())
        if text:
            out.append(Text(rid, text, language, part, source))
    return out


def train_texts(conv: Any, language: str = "", source: str = "") -> list[Text]:
    """Every user and assistant turn of a training conversation, one text each (``user[0]``, ``assistant[1]``)."""
    rid = conv.id if hasattr(conv, "id") else str(conv.get("id", ""))
    language = language or (conv.language if hasattr(conv, "language") else conv.get("language")) or ""
    return [Text(rid, c, language, f"{r}[{k}]", source) for k, (r, c) in enumerate(_messages(conv))
            if r in ("user", "assistant") and c.strip()]


def embedded_texts(data_dir: Any = None) -> tuple[list[Text], list[Text]]:
    """The embedded evaluation texts (prompts and references, every language) and training texts
    (every instruction turn, every language, and both sides of every parallel sentence pair)."""
    from polyinstruct.data import embedded

    evals: list[Text] = []
    for lang in embedded.eval_languages(data_dir):
        for c in embedded.load_eval_prompts(lang, data_dir):
            evals += eval_texts(c, lang, f"eval_prompts/{lang}.jsonl")
    train: list[Text] = []
    for lang in embedded.instruction_languages(data_dir):
        for c in embedded.load_instructions(lang, data_dir):
            train += train_texts(c, lang, f"instructions/{lang}.jsonl")
    english: set[str] = set()
    for lang in embedded.parallel_languages(data_dir):
        for pid, en, xx in embedded.load_parallel_pairs(lang, data_dir):
            if pid not in english:
                english.add(pid)
                train.append(Text(f"{pid}.en", en, "en", "sentence", f"parallel/en-{lang}.jsonl"))
            train.append(Text(f"{pid}.{lang}", xx, lang, "sentence", f"parallel/en-{lang}.jsonl"))
    return evals, train


def check_embedded(data_dir: Any = None, *, nearest: int = 5, crosslingual: Any = None) -> dict[str, Any]:
    """The embedded evaluation texts against all the embedded training texts (``embedded_texts``).

    Without ``crosslingual`` (a ``CrosslingualScorer``) only the surface measures run: they
    catch repeats and near-repeats in any file and turn, traditional/simplified variants, and
    text copied into another language's file, but not translations or paraphrases. Returns
    ``{"languages", "flagged": [OverlapPair], "nearest": {lang: [OverlapPair]}, "crosslingual"}``.
    """
    evals, train = embedded_texts(data_dir)
    pairs = compare("", evals, train, crosslingual=crosslingual)
    langs = sorted({t.language for t in evals}, key=[t.language for t in evals].index)
    near = {lang: [p for p in pairs if not p.flagged and p.language == lang][:nearest] for lang in langs}
    return {"languages": langs, "flagged": [p for p in pairs if p.flagged], "nearest": near,
            "crosslingual": crosslingual.describe() if crosslingual is not None else None}
