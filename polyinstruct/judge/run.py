"""``judge_predictions``: predictions JSONL in, judgments + summary out.

Writes into ``out_dir``: ``judgments.jsonl`` (one row per prediction, in input
order), ``summary.json`` (scores, usage, cost, config) and ``summary.md`` (a
table). Judge calls are cached on disk (see ``cache``), so rerunning after a
crash or with more predictions only pays for what is new. A call that fails for good
is a per-item error (``error`` in its row, counted in the summary); the outputs are
written either way, and when *no* item got a score the run ends with a
``NothingScoredError`` (the CLI exits 1 with one line saying why).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from polyinstruct.data.sources import iter_json_lines
from polyinstruct.errors import DataError, PolyinstructError
from polyinstruct.fileio import write_json, write_jsonl
from polyinstruct.judge.analyses import unique_token_analysis
from polyinstruct.judge.cache import JudgmentCache
from polyinstruct.judge.config import JudgeConfig, build_backend, cache_path, resolve_judge_config
from polyinstruct.judge.judges import PairwiseJudge, SingleJudge
from polyinstruct.lang.identify import LanguageIdentifier, load_identifier
from polyinstruct.judge.prompts import load_template
from polyinstruct.judge.scores import (apply_language_penalty, check_language_policy, markdown_table, pairwise_summary,
                                       summarize)

log = logging.getLogger(__name__)

class NothingScoredError(PolyinstructError):
    """Every judge call failed (no key, server unreachable, ...): there are no results to report."""


# Seed 1's training languages: robustness is averaged over these when present.
SEED_SEEN_LANGUAGES = ("en", "fr", "es", "bg", "ru", "zh")


def read_predictions(path: str | Path, *, need_reference: bool = False) -> list[dict[str, Any]]:
    """Load and check prediction rows; errors name file, line and field."""
    rows = []
    path = str(path)
    for i, r in iter_json_lines(path):
        for field in ("id", "messages", "response"):
            if field not in r:
                raise DataError("missing required field", path=path, line=i, field=field)
        if not isinstance(r["response"], str):
            raise DataError("must be a string", path=path, line=i, field="response")
        msgs = r["messages"]
        if not (isinstance(msgs, list) and msgs and all(isinstance(m, dict) and "content" in m for m in msgs)):
            raise DataError("must be a non-empty list of {role, content}", path=path, line=i, field="messages")
        if need_reference and not isinstance(r.get("reference"), str):
            raise DataError("pairwise judging against references needs a 'reference' string",
                            path=path, line=i, field="reference")
        rows.append(r)
    if not rows:
        raise DataError("no predictions", path=path)
    return rows


def judge_predictions(predictions_path: str | Path, out_dir: str | Path, *, judge: dict | str | JudgeConfig,
                      lid: str | LanguageIdentifier | None = "auto", progress: bool = False,
                      seen_languages: Iterable[str] | None = None, backend: Any = None,
                      lenient_close_pairs: bool | None = None, language_policy: str | None = None) -> dict[str, Any]:
    """Judge every prediction and write judgments/summary; returns the summary dict.

    ``judge``: JudgeConfig fields as a dict, a YAML path, or a model name.
    ``lid``: identifier name or instance for the language penalty (None: no penalty).
    ``seen_languages``: languages for the robustness average (default: seed 1's six
    seen languages that occur, else all). ``backend``: an already-built backend.
    ``lenient_close_pairs``, ``language_policy`` (``strict``: study 1, an undetermined language
    scores 0; ``lenient``: it keeps its score): see ``scores.apply_language_penalty``; None
    takes the judge config's fields of the same names (default strict, no close pairs).
    """
    cfg = resolve_judge_config(judge)
    language_policy = check_language_policy(cfg.language_policy if language_policy is None else language_policy)
    lenient_close_pairs = cfg.lenient_close_pairs if lenient_close_pairs is None else bool(lenient_close_pairs)
    template = load_template(cfg.template_name())
    if template.kind != cfg.mode:
        from polyinstruct.errors import ConfigError

        raise ConfigError(f"template {template.name!r} is a {template.kind} template but mode is {cfg.mode!r}",
                          field="judge.template")
    preds = read_predictions(predictions_path, need_reference=cfg.mode == "pairwise")
    out = Path(out_dir)
    own_backend = backend is None
    backend = backend or build_backend(cfg)
    cache = JudgmentCache(cache_path(cfg))
    kw = dict(judge_name=f"{cfg.backend}:{cfg.model}", params=cfg.decoding(), prompt_language=cfg.prompt_language,
              max_parse_retries=cfg.max_parse_retries, retry_unparsed=cfg.retry_unparsed)
    calls = len(preds) * (2 if cfg.mode == "pairwise" and cfg.both_orders else 1)
    on_done, close_bar = _progress(progress, calls, f"judging ({cfg.model})")
    t0 = time.time()
    try:
        if cfg.mode == "single":
            rows = SingleJudge(backend, template, cache, **kw).score(preds, on_done=on_done)
        else:
            pj = PairwiseJudge(backend, template, cache, seed=cfg.seed, both_orders=cfg.both_orders, **kw)
            rows = pj.compare(preds, on_done=on_done)
    finally:
        close_bar()
        if own_backend and hasattr(backend, "close"):
            backend.close()
    identifier = load_identifier(lid) if isinstance(lid, str) else lid
    if identifier is not None:
        apply_language_penalty(rows, [p["response"] for p in preds], identifier,
                               language_policy=language_policy, lenient_close_pairs=lenient_close_pairs)
    langs = {r.get("language") for r in rows}
    if seen_languages is None:
        seen = [lg for lg in SEED_SEEN_LANGUAGES if lg in langs] or None
    else:
        seen = list(seen_languages)
    summary: dict[str, Any] = {"predictions": str(predictions_path), "n": len(rows), "mode": cfg.mode,
                               "judge": kw["judge_name"], "template": template.name,
                               "template_version": template.version,
                               "lid": getattr(identifier, "name", None), "lenient_close_pairs": lenient_close_pairs,
                               "language_policy": language_policy if identifier is not None else None,
                               "wall_s": round(time.time() - t0, 3),
                               "cached": sum(bool(r.get("cached")) for r in rows),
                               "unparsed": sum(not r.get("parsed") and not r.get("error") for r in rows),
                               "errors": sum(bool(r.get("error")) for r in rows),
                               "scored": sum(_scored(r) for r in rows),
                               "usage": backend.usage.to_dict() if hasattr(backend, "usage") else None}
    if cfg.mode == "single":
        summary["scores"] = summarize(rows, seen_languages=seen)
        table = markdown_table(summary["scores"])
    else:
        summary["pairwise"] = pairwise_summary(rows)
        win = {m: s["win_rate"] for m, s in summary["pairwise"]["models"].items()}
        summary["unique_tokens"] = unique_token_analysis(preds, win)
        table = _pairwise_table(summary["pairwise"])
    write_jsonl(out / "judgments.jsonl", rows)
    write_json(out / "summary.json", summary)
    from polyinstruct.fileio import atomic_open

    with atomic_open(out / "summary.md") as f:
        f.write(f"# Judgments of {predictions_path}\n\njudge `{summary['judge']}`, template "
                f"`{template.name}` v{template.version}, LID `{summary['lid']}`\n\n{table}")
    if summary["errors"]:
        log.warning("%d judgments failed after retries (not cached; rerun to retry them)", summary["errors"])
    if summary["scored"] == 0 and summary["errors"]:
        first = next(r["error"] for r in rows if r.get("error"))
        raise NothingScoredError(f"no prediction was scored: {summary['errors']} of {len(rows)} judge calls failed "
                                 f"(first error: {_one_line(first)}); per-item errors are in {out / 'judgments.jsonl'}")
    return summary


def _scored(row: dict[str, Any]) -> bool:
    return row.get("score") is not None or row.get("verdict") is not None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _pairwise_table(s: dict[str, Any]) -> str:
    lines = ["| model | judged / n | win rate | wins | ties | losses | unparsed | inconsistent | first-position rate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, c in s["models"].items():
        judged = c["wins"] + c["ties"] + c["losses"]
        rate = "–" if c["win_rate"] is None else c["win_rate"]
        lines.append(f"| {m} | {judged} / {c['n']} | {rate} | {c['wins']} | {c['ties']} | {c['losses']} | "
                     f"{c['unparsed']} | {c['inconsistent_fraction']} | {c['first_position_rate']} |")
    return "\n".join(lines) + "\n"


def _progress(enabled: bool, total: int, desc: str) -> tuple[Callable[[int], None] | None, Callable[[], None]]:
    if not enabled:
        return None, lambda: None
    import threading

    from polyinstruct.progress import progress_bar

    bar = progress_bar(total, desc=desc, unit="call")
    lock = threading.Lock()

    def update(n: int) -> None:
        with lock:
            bar.update(n)
    return update, bar.close


def read_text_field(path: str, field: str) -> list[str]:
    """Texts of one field of a JSONL file (for ``polyinstruct lid --jsonl``)."""
    texts = []
    for i, row in iter_json_lines(path):
        if not isinstance(row.get(field), str):
            raise DataError("missing or not a string", path=path, line=i, field=field)
        texts.append(row[field])
    return texts
