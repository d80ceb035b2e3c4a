"""``translate_dataset``: every message of every record into each target language, gated, cached, resumable.

Output folder (see docs/translation.md)::

    OUT/<src>.jsonl            the source records in canonical form (ids as given)
    OUT/<lang>.jsonl           accepted translations, same ids, source order
    OUT/<lang>.rejects.jsonl   rejected records: id, reason, detail, the translation
    OUT/summary.json           counts per reason and a quality summary per language
    OUT/catalogue.yaml         a user catalogue: one entry per produced set
    OUT/cache.jsonl            translations keyed by a hash of engine, language pair and text

Resume: records whose id is already in ``<lang>.jsonl`` or ``<lang>.rejects.jsonl``
are skipped, and every piece translated before a kill is in the cache, so a
rerun asks the engine only for what it never answered.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from polyinstruct.data.records import Conversation, Message
from polyinstruct.errors import DataError, PolyinstructError
from polyinstruct.fileio import append_jsonl, write_json, write_jsonl
from polyinstruct.translate.cache import TranslationCache, repair_jsonl
from polyinstruct.translate.gates import REASONS, GateConfig, GateFailure, check_language, check_message, \
    check_units, chrf
from polyinstruct.translate.languages import parse_code
from polyinstruct.translate.protect import SpanError, join, restore, segment

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ results
@dataclass
class LanguageStats:
    records: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    pending: int = 0  # engine errors this run: neither written nor rejected; a rerun retries them
    pieces_translated: int = 0  # engine calls this run (forward + back)
    cache_hits: int = 0


@dataclass
class TranslateResult:
    out_dir: Path
    languages: list[str]
    stats: dict[str, LanguageStats]
    summary: dict[str, Any]

    @property
    def complete(self) -> bool:
        return not any(s.pending for s in self.stats.values())


# ------------------------------------------------------------------------------------------ helpers
def _load_source(src: str | os.PathLike, fmt: str | None, catalogue: Iterable[str],
                 language: str) -> list[Conversation]:
    from polyinstruct.data import load_dataset

    records = list(load_dataset(src, catalogue=list(catalogue) or None, format=fmt, language=language))
    seen: dict[str, int] = {}
    for i, r in enumerate(records):
        if r.id in seen:
            raise DataError(f"duplicate id {r.id!r} (records {seen[r.id] + 1} and {i + 1}); translations are "
                            "matched to the source and resumed by id", path=str(src), field="id")
        seen[r.id] = i
    return records


def _done_ids(path: Path) -> list[dict[str, Any]]:
    return repair_jsonl(path) if path.exists() else []


class _Translator:
    """Turns texts into translations through cache + engine; counts hits and calls."""

    def __init__(self, engine: Any, cache: TranslationCache):
        self.engine, self.cache = engine, cache
        self.streams = bool(getattr(getattr(engine, "backend", None), "generate_each", None))

    def run(self, texts: list[str], src: str, tgt: str, stats: LanguageStats) -> dict[str, str | Exception]:
        """Translate unique ``texts``: cache first, then the misses batched by length (longest first)."""
        out: dict[str, str | Exception] = {}
        misses: list[str] = []
        for t in dict.fromkeys(texts):
            hit = self.cache.get(TranslationCache.key(self.engine.key, src, tgt, t))
            if hit is not None:
                out[t] = hit
                stats.cache_hits += 1
            else:
                misses.append(t)
        misses.sort(key=len, reverse=True)
        bs = max(1, int(self.engine.batch_size))
        for start in range(0, len(misses), bs):
            batch = misses[start:start + bs]

            def on_result(i: int, res: Any, batch: list[str] = batch) -> None:
                if isinstance(res, Exception):
                    return
                self.cache.put(TranslationCache.key(self.engine.key, src, tgt, batch[i]),
                               {"engine": self.engine.key, "src": src, "tgt": tgt, "text": batch[i],
                                "translation": res}, flush=self.streams)

            try:
                results = self.engine.translate(batch, src, tgt, on_result=on_result)
            except PolyinstructError:
                raise
            except Exception as e:  # a model/engine failure on this batch: leave it for the next run
                log.warning("engine failed on a batch of %d pieces (%s: %s); they stay untranslated",
                            len(batch), type(e).__name__, e)
                results = [e] * len(batch)
            self.cache.flush()
            stats.pieces_translated += sum(not isinstance(r, Exception) for r in results)
            for t, r in zip(batch, results):
                out[t] = r
        return out


def _parts(conv: Conversation) -> list[str]:
    """The texts a conversation translates, in order: each message's content, then its input if any."""
    return [t for m in conv.messages for t in ((m.content, m.input) if m.input else (m.content,))]


def _rebuild(conv: Conversation, texts: list[str], tgt: str | None) -> list[Message]:
    """Messages with ``texts`` (ordered as ``_parts``) in place of their contents and inputs."""
    it = iter(texts)
    return [Message(m.role, next(it), (tgt if m.language else None) if tgt else m.language,
                    next(it) if m.input else None) for m in conv.messages]


def _message_pieces(conv: Conversation) -> list[Any]:
    return [segment(t) for t in _parts(conv)]


def _translate_records(convs: list[Conversation], src: str, tgt: str, tr: _Translator, cfg: GateConfig,
                       lid: Any, stats: LanguageStats) -> tuple[list[dict], list[dict], list[str]]:
    """Translate and gate a chunk; returns (accepted rows, reject rows, ids left pending)."""
    segs = [_message_pieces(c) for c in convs]
    texts = [u.text for ss in segs for s in ss for u in s.units]
    got = tr.run(texts, src, tgt, stats)
    accepted: list[tuple[Conversation, list[Any], dict]] = []
    rejects: list[dict] = []
    pending: list[str] = []
    candidates: list[tuple[Conversation, list[Any], list[str]]] = []
    for conv, ss in zip(convs, segs):
        outs = [[got[u.text] for u in s.units] for s in ss]
        errors = [o for os_ in outs for o in os_ if isinstance(o, Exception)]
        if errors:
            pending.append(conv.id)
            continue
        # Every message reassembled first, so a reject row shows the whole translation (tags as
        # the engine left them where restoring failed).
        new_contents: list[str] = []
        span_error: SpanError | None = None
        for s, os_ in zip(ss, outs):
            try:
                new_contents.append(join(s, [restore(u, o) for u, o in zip(s.units, os_)]))
            except SpanError as e:
                span_error = span_error or e
                new_contents.append(join(s, list(os_)))
        try:
            for s, os_ in zip(ss, outs):
                check_units([u.text for u in s.units], os_, cfg)
            if span_error is not None:
                raise GateFailure("protected-span-lost", str(span_error))
            ratios = [check_message(o, t, src, tgt, cfg) for o, t in zip(_parts(conv), new_contents)]
        except GateFailure as g:
            rejects.append(_reject_row(conv, tgt, g, new_contents))
            continue
        candidates.append((conv, new_contents, [r for r in ratios if r is not None]))
    # Language ID of every translated message, in one call.
    flat = [t for _, contents, _ in candidates for t in contents]
    detected = lid.identify(flat) if flat else []
    k = 0
    for conv, contents, ratios in candidates:
        langs = detected[k:k + len(contents)]
        k += len(contents)
        try:
            for d in langs:
                check_language(d, tgt)
        except GateFailure as g:
            rejects.append(_reject_row(conv, tgt, g, contents))
            continue
        determined = [c for c, _ in langs if c != "und"]
        quality = {"lid": [[c, round(p, 3)] for c, p in langs],
                   "length_ratio": round(sum(ratios) / len(ratios), 3) if ratios else None,
                   "lid_undetermined": len(langs) - len(determined)}
        accepted.append((conv, contents, quality))
    if cfg.back_translate and accepted:
        accepted, more_rejects, more_pending = _back_translate(accepted, src, tgt, tr, cfg, stats)
        rejects += more_rejects
        pending += more_pending
    rows = [_output_row(conv, contents, tgt, src, tr.engine, quality) for conv, contents, quality in accepted]
    return rows, rejects, pending


def _back_translate(accepted: list[tuple[Conversation, list[str], dict]], src: str, tgt: str, tr: _Translator,
                    cfg: GateConfig, stats: LanguageStats):
    segs = [[segment(t) for t in contents] for _, contents, _ in accepted]
    got = tr.run([u.text for ss in segs for s in ss for u in s.units], tgt, src, stats)
    keep, rejects, pending = [], [], []
    for (conv, contents, quality), ss in zip(accepted, segs):
        outs = [[got[u.text] for u in s.units] for s in ss]
        if any(isinstance(o, Exception) for os_ in outs for o in os_):
            pending.append(conv.id)
            continue
        scores = []
        for original, s, os_ in zip(_parts(conv), ss, outs):
            if not s.units:
                continue
            try:
                back = join(s, [restore(u, o) for u, o in zip(s.units, os_)])
            except SpanError:
                back = join(s, list(os_))  # a lost tag on the way back is the round trip's loss, scored as is
            scores.append(chrf(back, original))
        score = sum(scores) / len(scores) if scores else None
        quality["bt_chrf"] = round(score, 2) if score is not None else None
        if score is not None and score < cfg.min_bt_chrf:
            rejects.append(_reject_row(conv, tgt, GateFailure(
                "low-back-translation-chrf", f"round-trip chrF {score:.1f} < {cfg.min_bt_chrf}"), contents))
            continue
        keep.append((conv, contents, quality))
    return keep, rejects, pending


def _output_row(conv: Conversation, contents: list[str], tgt: str, src: str, engine: Any, quality: dict) -> dict:
    msgs = _rebuild(conv, contents, tgt)
    meta = {**conv.meta, "translation": {"from": src, "engine": engine.key, **quality}}
    return Conversation(conv.id, msgs, language=tgt, source=conv.source, tags=list(conv.tags), license=conv.license,
                        meta=meta).to_dict()


def _reject_row(conv: Conversation, tgt: str, g: GateFailure, contents: list[str]) -> dict:
    return {"id": conv.id, "language": tgt, "reason": g.reason, "detail": g.detail,
            "translation": [m.to_dict() for m in _rebuild(conv, contents, None)]}


# ------------------------------------------------------------------------------------------ main entry
def translate_dataset(src: str | os.PathLike, targets: list[str], out_dir: str | os.PathLike, engine: Any, *,
                      source_language: str = "en", fmt: str | None = None, catalogue: Iterable[str] = (),
                      gates: GateConfig | None = None, cache_path: str | os.PathLike | None = None,
                      chunk_size: int = 256, limit: int | None = None, name: str | None = None,
                      progress: bool = True, lid: Any = None) -> TranslateResult:
    """Translate ``src`` into each of ``targets``; see the module doc for what lands in ``out_dir``."""
    from polyinstruct.lang.identify import load_identifier

    cfg = gates or GateConfig()
    src_lang = parse_code(source_language, field="src")
    langs = list(dict.fromkeys(parse_code(t, field="to") for t in targets))
    if not langs:
        raise DataError("give at least one target language (--to fr,es,...)", field="to")
    if src_lang in langs:
        raise DataError(f"the source language {src_lang} is also a target", field="to")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = _load_source(src, fmt, catalogue, src_lang)
    if limit is not None:
        records = records[:limit]
    others = Counter(r.language for r in records if r.language and r.language != src_lang)
    if others:
        log.warning("%d records say they are not in the source language %s (%s); they are translated as %s "
                    "(set --src-lang if that is wrong)", sum(others.values()), src_lang,
                    ", ".join(f"{k}: {n}" for k, n in others.most_common(3)), src_lang)
    for r in records:
        r.language = r.language or src_lang
    write_jsonl(out / f"{src_lang}.jsonl", (r.to_dict() for r in records))
    cache = TranslationCache(cache_path or out / "cache.jsonl")
    identifier = lid if lid is not None else load_identifier(cfg.lid)
    stats = {lang: LanguageStats(records=len(records)) for lang in langs}
    done: dict[str, set[str]] = {}
    for lang in langs:
        done[lang] = {d["id"] for d in _done_ids(out / f"{lang}.jsonl")} | \
                     {d["id"] for d in _done_ids(out / f"{lang}.rejects.jsonl")}
    bar = None
    total = len(records) * len(langs)
    initial = sum(len(done[lang] & {r.id for r in records}) for lang in langs)
    if progress:
        from polyinstruct.progress import progress_bar

        bar = progress_bar(total, initial=initial, unit="rec", desc="translate")
    tr = _Translator(engine, cache)
    try:
        for lang in langs:
            pending = [r for r in records if r.id not in done[lang]]
            for start in range(0, len(pending), chunk_size):
                chunk = pending[start:start + chunk_size]
                rows, rejects, left = _translate_records(chunk, src_lang, lang, tr, cfg, identifier, stats[lang])
                # Rejects first: a kill between the two appends leaves accepted rows to redo (from the cache).
                append_jsonl(out / f"{lang}.rejects.jsonl", rejects)
                append_jsonl(out / f"{lang}.jsonl", rows)
                stats[lang].pending += len(left)
                if bar is not None:
                    bar.update(len(rows) + len(rejects))
                    bar.set_postfix(lang=lang, cached=sum(s.cache_hits for s in stats.values()),
                                    translated=sum(s.pieces_translated for s in stats.values()))
    finally:
        if bar is not None:
            bar.close()
        cache.flush()
    summary = _finalize(out, records, src_lang, langs, engine, cfg, stats, src, name)
    return TranslateResult(out, langs, stats, summary)


def _finalize(out: Path, records: list[Conversation], src_lang: str, langs: list[str], engine: Any,
              cfg: GateConfig, stats: dict[str, LanguageStats], src: Any, name: str | None) -> dict[str, Any]:
    """Rewrite each language file in source order, then write summary.json and catalogue.yaml."""
    order = {r.id: i for i, r in enumerate(records)}
    per_lang: dict[str, Any] = {}
    for lang in langs:
        rows = [d for d in _done_ids(out / f"{lang}.jsonl") if d["id"] in order]
        rows = list({d["id"]: d for d in rows}.values())
        rows.sort(key=lambda d: order[d["id"]])
        write_jsonl(out / f"{lang}.jsonl", rows)
        rej = [d for d in _done_ids(out / f"{lang}.rejects.jsonl") if d["id"] in order]
        rej = list({d["id"]: d for d in rej}.values())
        rej.sort(key=lambda d: order[d["id"]])
        write_jsonl(out / f"{lang}.rejects.jsonl", rej)
        st = stats[lang]
        st.accepted = len(rows)
        st.rejected = Counter(d["reason"] for d in rej)
        q = [d.get("meta", {}).get("translation", {}) for d in rows]
        lid_conf = [p for x in q for c, p in x.get("lid", []) if c != "und"]
        ratios = [x["length_ratio"] for x in q if x.get("length_ratio") is not None]
        bt = [x["bt_chrf"] for x in q if x.get("bt_chrf") is not None]
        per_lang[lang] = {
            "records": len(records), "accepted": len(rows), "rejected": sum(st.rejected.values()),
            "pending": len(records) - len(rows) - len(rej),
            "accept_rate": round(len(rows) / len(records), 4) if records else None,
            "rejected_by_reason": {r: st.rejected[r] for r in REASONS if st.rejected[r]},
            "lid_mean_confidence": round(sum(lid_conf) / len(lid_conf), 4) if lid_conf else None,
            "lid_undetermined_messages": sum(x.get("lid_undetermined", 0) for x in q),
            "length_ratio_mean": round(sum(ratios) / len(ratios), 3) if ratios else None,
            "back_translation_chrf_mean": round(sum(bt) / len(bt), 2) if bt else None,
            "this_run": {"pieces_translated": st.pieces_translated, "cache_hits": st.cache_hits,
                         "engine_errors": st.pending},
        }
    date = _dt.date.today().isoformat()
    base = name or _default_name(src)
    summary = {"source": str(src), "source_language": src_lang, "engine": engine.key, "date": date,
               "gates": asdict(cfg), "languages": per_lang,
               "complete": all(v["pending"] == 0 for v in per_lang.values())}
    write_json(out / "summary.json", summary)
    _write_catalogue(out, base, src_lang, langs, per_lang, engine, date, records, src)
    return summary


def _default_name(src: Any) -> str:
    p = Path(str(src))
    stem = p.stem if p.suffix else p.name
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in stem) or "translated"


def _write_catalogue(out: Path, base: str, src_lang: str, langs: list[str], per_lang: dict[str, Any], engine: Any,
                     date: str, records: list[Conversation], src: Any) -> None:
    """A user catalogue in the format of ``polyinstruct.data.catalogue`` (pass it with --catalogue)."""
    import yaml

    licenses = {r.license for r in records}
    license_ = licenses.pop() if len(licenses) == 1 else None
    datasets: dict[str, Any] = {
        f"{base}-{src_lang}": {"path": f"{src_lang}.jsonl", "format": "messages", "languages": [src_lang],
                               "size": len(records), "description": f"source of the translations: {src}"},
    }
    engine_name = engine.key.split("|", 2)
    for lang in langs:
        s = per_lang[lang]
        datasets[f"{base}-{lang}"] = {
            "path": f"{lang}.jsonl", "format": "messages", "languages": [lang], "generation": "machine-translated",
            "size": s["accepted"],
            "description": (f"machine-translated from {base}-{src_lang} ({src_lang}) by engine {engine_name[0]} "
                            f"(model {engine_name[1] if len(engine_name) > 1 else '?'}) on {date}; "
                            f"{s['accepted']} of {s['records']} records passed the quality gates (summary.json)"),
            "tags": ["machine-translated", f"engine:{engine.key}", f"date:{date}"],
        }
        if license_:
            datasets[f"{base}-{lang}"]["license"] = license_
    if license_:
        datasets[f"{base}-{src_lang}"]["license"] = license_
    from polyinstruct.fileio import atomic_open

    with atomic_open(out / "catalogue.yaml") as f:
        f.write(f"# Written by `polyinstruct data translate` on {date}. Use: --catalogue {out / 'catalogue.yaml'}\n")
        yaml.safe_dump({"datasets": datasets}, f, allow_unicode=True, sort_keys=False)
