"""Accuracy of a language identifier on labelled text.

Two sets:
- ``field="reference"`` / ``"prompt"``: the evaluation prompts
  (``resources/data/eval_prompts/<lang>.jsonl``, canonical conversations whose last
  assistant turn is the reference answer);
- ``field="heldout"``: the held-out LID set (``resources/data/lid_heldout/<lang>.jsonl``,
  rows ``{"id", "language", "kind", "text", "batch"}``; ``kind`` is short / answer /
  question / mixed). It was written for measuring identifiers and is never used to tune
  them; batch 2 was written after the ensemble's confidence rule changed and was first
  measured with the final rule (docs/judging.md).

Reports accuracy per language and a confusion table (gold x predicted, ``und``
included as a prediction).
"""

from __future__ import annotations

from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

from polyinstruct.errors import DataError
from polyinstruct.fileio import iter_jsonl
from polyinstruct.lang.codes import normalize_code
from polyinstruct.lang.identify import LanguageIdentifier, load_identifier


def default_eval_dir() -> Path:
    return Path(str(resources.files("polyinstruct") / "resources" / "data" / "eval_prompts"))


def default_heldout_dir() -> Path:
    return Path(str(resources.files("polyinstruct") / "resources" / "data" / "lid_heldout"))


def load_heldout_texts(heldout_dir: str | Path | None = None, batch: int | None = None) -> list[tuple[str, str, str]]:
    """(id, gold language, text) of the held-out LID set (``batch``: only rows of that batch)."""
    d = Path(heldout_dir) if heldout_dir else default_heldout_dir()
    files = sorted(d.glob("*.jsonl"))
    if not files:
        raise DataError("no held-out LID files (*.jsonl) found", path=str(d))
    out = []
    for path in files:
        for i, row in enumerate(iter_jsonl(path), start=1):
            for key in ("id", "language", "text"):
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise DataError(f"missing or empty {key!r}", path=str(path), line=i, field=key)
            if batch is None or row.get("batch", 1) == batch:
                out.append((row["id"], normalize_code(row["language"]), row["text"]))
    return out


def load_eval_texts(eval_dir: str | Path | None = None, field: str = "reference") -> list[tuple[str, str, str]]:
    """(id, gold language, text) for ``field`` = ``reference`` (last assistant turn), ``prompt``
    (user turns) or ``heldout`` (the held-out LID set; ``eval_dir`` then names its folder)."""
    if field in ("heldout", "heldout-1", "heldout-2"):
        return load_heldout_texts(eval_dir, None if field == "heldout" else int(field[-1]))
    d = Path(eval_dir) if eval_dir else default_eval_dir()
    files = sorted(d.glob("*.jsonl"))
    if not files:
        raise DataError("no evaluation prompt files (*.jsonl) found", path=str(d))
    out = []
    for path in files:
        for i, row in enumerate(iter_jsonl(path), start=1):
            msgs = row.get("messages") or []
            gold = normalize_code(row.get("language") or path.stem)
            if field == "reference":
                texts = [m["content"] for m in msgs if m.get("role") == "assistant"][-1:]
            elif field == "prompt":
                texts = ["\n".join(m["content"] for m in msgs if m.get("role") == "user")]
            else:
                raise ValueError(f"field must be 'reference', 'prompt', 'heldout' or 'heldout-1'/'heldout-2', not {field!r}")
            if not texts or not texts[0].strip():
                raise DataError(f"no {field} text", path=str(path), line=i, field="messages")
            out.append((str(row.get("id", i)), gold, texts[0]))
    return out


def evaluate_lid(eval_dir: str | Path | None = None, identifier: str | LanguageIdentifier = "auto",
                 field: str = "reference", **identifier_kw) -> dict[str, Any]:
    """Accuracy overall and per gold language, the confusion table, and the misidentified items."""
    ident = load_identifier(identifier, **identifier_kw) if isinstance(identifier, str) else identifier
    items = load_eval_texts(eval_dir, field)
    preds = ident.identify([t for _, _, t in items])
    confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    errors = []
    for (iid, gold, text), (code, conf) in zip(items, preds):
        confusion[gold][code] += 1
        if code != gold:
            errors.append({"id": iid, "gold": gold, "predicted": code, "confidence": round(conf, 3),
                           "text": text[:120]})
    per_lang = {g: round(row.get(g, 0) / sum(row.values()), 4) for g, row in sorted(confusion.items())}
    correct = sum(row.get(g, 0) for g, row in confusion.items())
    return {"identifier": getattr(ident, "name", str(identifier)), "field": field, "n": len(items),
            "accuracy": round(correct / len(items), 4), "per_language": per_lang,
            "confusion": {g: dict(sorted(r.items(), key=lambda kv: -kv[1])) for g, r in sorted(confusion.items())},
            "errors": errors}


def format_confusion(result: dict[str, Any]) -> str:
    """Plain-text confusion table: one row per gold language."""
    conf = result["confusion"]
    cols = sorted({p for row in conf.values() for p in row}, key=lambda c: (c not in conf, c))
    head = "gold\\pred " + " ".join(f"{c:>5}" for c in cols) + "   acc"
    lines = [f"{result['identifier']} on {result['field']}s: accuracy {result['accuracy']:.4f} (n={result['n']})",
             head]
    for g, row in conf.items():
        lines.append(f"{g:<9} " + " ".join(f"{row.get(c, 0):>5}" for c in cols) + f"  {result['per_language'][g]:.3f}")
    return "\n".join(lines)
