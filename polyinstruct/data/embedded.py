"""The project's own embedded data: parallel instructions, evaluation prompts, sentence pairs.

Files live under ``polyinstruct/resources/data/`` (package data). Instruction
files may still be split into ``instructions/parts/{lang}.part1.jsonl``,
``.part2.jsonl``...; the merged ``instructions/{lang}.jsonl`` wins when present.
"""

from __future__ import annotations

import re
from pathlib import Path

from polyinstruct.data.records import Conversation
from polyinstruct.data.sources import iter_json_lines
from polyinstruct.data.validate import RecordError, check_record

DATA_DIR = Path(__file__).resolve().parent.parent / "resources" / "data"
INSTRUCTION_LANGUAGES = ("en", "fr", "es", "ru", "bg", "zh")
EVAL_LANGUAGES = INSTRUCTION_LANGUAGES + ("bn", "no")
PARALLEL_LANGUAGES = ("fr", "es", "ru", "bg", "zh")
_PART_RE = re.compile(r"\.part(\d+)\.jsonl$")


def _dir(data_dir: Path | None) -> Path:
    return Path(data_dir) if data_dir is not None else DATA_DIR


def _code(lang: str) -> str:
    """A language code names a file here: refuse anything else (``../x``) before building a path."""
    from polyinstruct.lang.codes import language_code_problem

    problem = language_code_problem(lang)
    if problem:
        raise RecordError("bad-language", problem, field="language")
    return lang


def _langs(folder: Path, pattern: str, order: tuple[str, ...]) -> list[str]:
    found = set()
    for p in folder.glob(pattern):
        found.add(p.name.split(".")[0].replace("en-", "", 1) if p.name.startswith("en-") else p.name.split(".")[0])
    return [c for c in order if c in found] + sorted(found - set(order))


def instruction_files(lang: str, data_dir: Path | None = None) -> list[Path]:
    """The merged file if present, else its parts in numeric order; [] when absent."""
    data_dir = _dir(data_dir)
    merged = data_dir / "instructions" / f"{_code(lang)}.jsonl"
    if merged.is_file():
        return [merged]
    parts = list((data_dir / "instructions" / "parts").glob(f"{lang}.part*.jsonl"))
    return sorted(parts, key=lambda p: int(_PART_RE.search(p.name).group(1)) if _PART_RE.search(p.name) else 0)


def instruction_languages(data_dir: Path | None = None) -> list[str]:
    """Languages with embedded instruction data (merged files or parts)."""
    data_dir = _dir(data_dir)
    d = data_dir / "instructions"
    return [c for c in _langs(d, "*.jsonl", INSTRUCTION_LANGUAGES) + _langs(d / "parts", "*.part*.jsonl", ())
            if instruction_files(c, data_dir)] if d.is_dir() else []


def _read_conversations(files: list[Path], what: str) -> list[Conversation]:
    if not files:
        raise RecordError("missing-file", f"no embedded {what} data", path=str(DATA_DIR))
    out = []
    for f in files:
        for n, d in iter_json_lines(f):
            try:
                check_record(d)
            except RecordError as e:
                raise e.located(str(f), n) from None
            out.append(Conversation.from_dict(d))
    return out


def load_instructions(lang: str, data_dir: Path | None = None) -> list[Conversation]:
    """Embedded instruction-response examples in ``lang`` (same ids across languages)."""
    return _read_conversations(instruction_files(lang, data_dir), f"instruction ({lang})")


def eval_languages(data_dir: Path | None = None) -> list[str]:
    d = _dir(data_dir) / "eval_prompts"
    return _langs(d, "*.jsonl", EVAL_LANGUAGES) if d.is_dir() else []


def load_eval_prompts(lang: str, data_dir: Path | None = None) -> list[Conversation]:
    """The 50 evaluation prompts in ``lang``; the assistant turn is the reference answer."""
    f = _dir(data_dir) / "eval_prompts" / f"{_code(lang)}.jsonl"
    return _read_conversations([f] if f.is_file() else [], f"evaluation prompt ({lang})")


def parallel_languages(data_dir: Path | None = None) -> list[str]:
    d = _dir(data_dir) / "parallel"
    return _langs(d, "en-*.jsonl", PARALLEL_LANGUAGES) if d.is_dir() else []


def parallel_file(lang: str, data_dir: Path | None = None) -> Path:
    return _dir(data_dir) / "parallel" / f"en-{_code(lang)}.jsonl"


def load_parallel_pairs(lang: str, data_dir: Path | None = None) -> list[tuple[str, str, str]]:
    """English-``lang`` sentence pairs as ``(id, en, xx)``."""
    f = parallel_file(lang, data_dir)
    if not f.is_file():
        raise RecordError("missing-file", f"no embedded parallel data for en-{lang}", path=str(f))
    pairs = []
    for n, d in iter_json_lines(f):
        for k in ("id", "en", lang):
            if not isinstance(d.get(k), str) or not d[k].strip():
                raise RecordError("missing-field", f"missing or empty {k!r}", path=str(f), line=n, field=k)
        pairs.append((d["id"], d["en"], d[lang]))
    return pairs
