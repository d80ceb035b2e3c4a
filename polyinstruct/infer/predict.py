"""Batch prediction over a dataset: resumable, chunked, atomic JSONL output.

Each chunk of finished rows is appended with one write + fsync, so a killed run
leaves only whole lines (a torn last line from a crash mid-write is cut off on the
next start). A rerun reads the ids already written and generates only the rest,
so every id ends up in the file exactly once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyinstruct.data.records import Conversation
from polyinstruct.errors import DataError, PolyinstructError
from polyinstruct.fileio import append_jsonl, iter_jsonl_numbered
from polyinstruct.infer.backend import DecodingParams, GenerationBackend
from polyinstruct.infer.decoding import resolve_decoding

log = logging.getLogger(__name__)


@dataclass
class PredictStats:
    """What one call did; passed to ``on_chunk`` after every appended chunk."""

    total: int = 0
    skipped: int = 0  # already in the output file
    done: int = 0  # generated in this call
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


def load_conversations(data: str | os.PathLike | Iterable[Conversation | dict[str, Any]],
                       fmt: str | None = None) -> Iterable[Conversation]:
    """Records from a dataset path (any format ``polyinstruct.data`` reads) or an iterable.

    Evaluation sets may be prompt-only, so a final assistant turn is optional here;
    when present it becomes the row's ``reference``.
    """
    if isinstance(data, (str, os.PathLike)):
        from polyinstruct.data.formats import read_records

        return read_records(data, fmt, require_answer=False)
    return (c if isinstance(c, Conversation) else Conversation.from_dict(c) for c in data)


def prompt_language(conv: Conversation) -> str | None:
    """Language of the prompt: the last user turn's, else the conversation's."""
    for i in range(len(conv.prompt_messages) - 1, -1, -1):
        if conv.messages[i].role == "user":
            return conv.message_language(i)
    return conv.language


def repair_tail(path: Path) -> None:
    """Cut a torn last line (a crash mid-append) so the next append starts on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1
        log.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run", path, len(data) - keep)
        f.truncate(keep)


def read_existing(out: Path) -> list[dict[str, Any]]:
    """Rows already in a predict ``--out`` file; a corrupt line or a row without ``id`` is a located error."""
    if not out.exists():
        return []
    rows = []
    for line, row in iter_jsonl_numbered(out):
        if not isinstance(row.get("id"), (str, int)) or isinstance(row.get("id"), bool):
            raise DataError("missing or invalid 'id' (predictions are resumed by id); fix the line or write to a "
                            "new output file", path=str(out), line=line, field="id")
        rows.append(row)
    return rows


def _resolve_backend(model: str | GenerationBackend, backend: str, backend_kwargs: dict[str, Any]
                     ) -> tuple[GenerationBackend, str]:
    if isinstance(model, (str, os.PathLike)):
        from polyinstruct.infer import load_backend

        return load_backend({"backend": backend, "model": str(model), **backend_kwargs}), str(model)
    return model, getattr(model, "model_name", None) or getattr(model, "model", None) or model.name


def predict(data: str | os.PathLike | Iterable[Conversation | dict[str, Any]], model: str | GenerationBackend,
            out_path: str | os.PathLike, *, backend: str = "hf", decoding: str | DecodingParams = "greedy",
            max_new_tokens: int | None = None, batch_size: int = 16, limit: int | None = None,
            progress: bool = False, chunk_size: int | None = None, data_format: str | None = None,
            backend_kwargs: dict[str, Any] | None = None, model_name: str | None = None,
            on_chunk: Callable[[PredictStats], None] | None = None) -> Path:
    """Generate one response per record of ``data`` and append prediction rows to ``out_path``.

    Rows: id, messages (the prompt), prompt (rendered text, when the backend renders),
    response, language (of the prompt), model, decoding, reference (the dataset's final
    assistant turn, if any), finish_reason, completion_tokens. Resumable by id.
    ``limit`` counts dataset records (the first ``limit``), not newly generated rows.
    """
    out = Path(out_path)
    params = resolve_decoding(decoding, max_new_tokens=max_new_tokens)
    repair_tail(out)
    existing = read_existing(out)
    done_ids = {str(r["id"]) for r in existing}
    expected_name = model_name or (str(model) if isinstance(model, (str, os.PathLike)) else None)
    for r in existing[:1]:  # resuming must not mix settings in one file
        if r.get("decoding") != params.to_dict() or (expected_name and r.get("model") != expected_name):
            raise PolyinstructError(
                f"{out} already holds predictions from model {r.get('model')!r} with decoding {r.get('decoding')}; "
                f"this run uses {expected_name or 'another model'!r} with {params.to_dict()}. "
                "Write to a new output file (or delete this one) instead of mixing settings.")

    pending: list[Conversation] = []
    seen: dict[str, int] = {}
    stats = PredictStats()
    for n, conv in enumerate(load_conversations(data, data_format)):
        if limit is not None and n >= limit:
            break
        if conv.id in seen:
            raise DataError(f"duplicate id {conv.id!r} (records {seen[conv.id] + 1} and {n + 1}); "
                            "predictions are keyed by id", path=str(data) if isinstance(data, (str, os.PathLike))
                            else None, field="id")
        seen[conv.id] = n
        if not conv.prompt_messages:
            raise DataError("record has no prompt (no messages before the final assistant turn)",
                            field="messages", record_id=conv.id,
                            path=str(data) if isinstance(data, (str, os.PathLike)) else None)
        stats.total += 1
        if conv.id in done_ids:
            stats.skipped += 1
        else:
            pending.append(conv)
    if stats.skipped:
        log.info("%s: %d of %d ids already predicted; generating %d", out, stats.skipped, stats.total, len(pending))
    if not pending:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
        return out

    gen_backend, default_name = _resolve_backend(model, backend, {"batch_size": batch_size, **(backend_kwargs or {})}
                                                 if backend == "hf" else dict(backend_kwargs or {}))
    name = model_name or default_name
    render = getattr(gen_backend, "render", None)
    # Longest prompts first: batches hold similar lengths (less padding) and memory errors show early.
    pending.sort(key=lambda c: -sum(len(m.content) for m in c.prompt_messages))
    chunk = chunk_size or batch_size * 4
    bar = None
    if progress:
        from polyinstruct.progress import progress_bar

        bar = progress_bar(stats.total, initial=stats.skipped, unit="row", desc="predict")
    t0 = time.perf_counter()
    try:
        for start in range(0, len(pending), chunk):
            convs = pending[start:start + chunk]
            prompts = [[m.to_dict() for m in c.prompt_messages] for c in convs]
            # a user turn's Alpaca "input" travels with it: templates render it, HTTP backends fold it in
            msgs = [[{k: m[k] for k in ("role", "content", "input") if k in m} for m in p] for p in prompts]
            gens = gen_backend.generate(msgs, params)
            if len(gens) != len(convs):
                raise PolyinstructError(f"backend returned {len(gens)} generations for {len(convs)} prompts")
            rows = []
            for conv, prompt, g in zip(convs, prompts, gens):
                last = conv.messages[-1] if conv.messages else None
                rows.append({
                    "id": conv.id, "messages": prompt, "prompt": render(msgs[len(rows)]) if render else None,
                    "response": g.text, "language": prompt_language(conv), "model": name,
                    "decoding": params.to_dict(),
                    "reference": last.content if last is not None and last.role == "assistant" else None,
                    "finish_reason": g.finish_reason, "completion_tokens": g.completion_tokens,
                })
            append_jsonl(out, rows)
            stats.done += len(rows)
            stats.completion_tokens += sum(g.completion_tokens for g in gens)
            stats.seconds = time.perf_counter() - t0
            if bar is not None:
                bar.update(len(rows))
                bar.set_postfix(tok_s=f"{stats.tokens_per_s:.1f}")
            if on_chunk is not None:
                on_chunk(stats)
    finally:
        if bar is not None:
            bar.close()
    log.info("%s: wrote %d rows, %d tokens in %.1fs (%.1f tokens/s)", out, stats.done, stats.completion_tokens,
             stats.seconds, stats.tokens_per_s)
    return out
