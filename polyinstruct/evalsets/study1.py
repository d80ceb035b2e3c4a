"""Study 1's published test set: 50 prompts sampled from OpenAssistant, translated by
native speakers (docs/experiments.md, "Evaluation data").

Schema (one file per language, ``test_<lang>.jsonl``, as the authors publish it in the
``test-data/`` folder of their GitHub repository ``hplt-project/monolingual-multilingual-
instruction-tuning``): one JSON object per line,

    {"id": "<uuid of the OpenAssistant message>", "prompt": "<the prompt in that language>"}

There are no reference answers. The files cover en, bg, es, fr, ru, zh (seen in
training) and bn, no (unseen), plus cs, fi and hi. Prompt ids are the OpenAssistant
message ids and are shared across languages, with exceptions (so nothing here relies
on them lining up). The authors' licence is CC BY-NC 4.0: the files are never bundled
with polyinstruct; they are read from a local folder or, when online, downloaded from
GitHub at a pinned commit into the cache folder.

``load_study1_prompts(lang, source)``: ``source`` is a folder holding ``test_<lang>.jsonl``
(or ``<lang>.jsonl``), or ``"github"`` (``"github@<commit>"`` for another commit).
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from pathlib import Path

from polyinstruct.data.records import Conversation, Message
from polyinstruct.errors import ConfigError, DataError
from polyinstruct.fileio import iter_jsonl_numbered

log = logging.getLogger(__name__)

REPOSITORY = "hplt-project/monolingual-multilingual-instruction-tuning"
# The commit the test files were first published at; test_zh.jsonl has a later revision
# (ca5970bf...), which "github@ca5970bf76c11205da8f748bf623808a0141facc" selects.
DEFAULT_COMMIT = "c26915d80c6ae2008d9069610e9e65dfb4579429"
LANGUAGES = ("en", "fr", "es", "ru", "bg", "zh", "bn", "no")
LICENSE = "CC-BY-NC-4.0"
SOURCE_NAME = "study1-test"


def raw_url(lang: str, commit: str = DEFAULT_COMMIT) -> str:
    return f"https://raw.githubusercontent.com/{REPOSITORY}/{commit}/test-data/test_{lang}.jsonl"


def parse_file(path: Path, lang: str) -> list[Conversation]:
    """Read one ``test_<lang>.jsonl``; a bad line is an error naming file, line and field."""
    out: list[Conversation] = []
    seen: set[str] = set()
    for n, row in iter_jsonl_numbered(path, complete_only=False):
        for key in ("id", "prompt"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataError(f"missing or empty string {key!r}", path=str(path), line=n, field=key)
        if row["id"] in seen:
            raise DataError(f"duplicate id {row['id']!r}", path=str(path), line=n, field="id")
        seen.add(row["id"])
        out.append(Conversation(id=row["id"], messages=[Message("user", row["prompt"])], language=lang,
                                source=SOURCE_NAME, license=LICENSE,
                                meta={"study1_file": path.name, "study1_line": n}))
    if not out:
        raise DataError("no prompts", path=str(path))
    return out


def _cached_download(lang: str, commit: str) -> Path:
    from polyinstruct.config import cache_dir
    from polyinstruct.fileio import atomic_open

    dest = cache_dir("study1", commit, f"test_{lang}.jsonl")
    if dest.is_file():
        return dest
    url = raw_url(lang, commit)
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - fixed https URL
            data = r.read()
    except (urllib.error.URLError, OSError) as e:
        raise DataError(f"cannot download study 1's {lang} test prompts from {url} ({e}); offline, pass a local "
                        f"folder holding test_{lang}.jsonl instead (docs/experiments.md)") from None
    with atomic_open(dest, "wb") as f:
        f.write(data)
    return dest


def load_study1_prompts(lang: str, source: str | Path = "github") -> list[Conversation]:
    """Study 1's prompts in ``lang`` from a local folder or GitHub (see the module docstring)."""
    src = str(source)
    if src == "github" or src.startswith("github@"):
        commit = src.split("@", 1)[1] if "@" in src else DEFAULT_COMMIT
        return parse_file(_cached_download(lang, commit), lang)
    folder = Path(src).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"study 1 test set folder not found: {folder} (expected test_<lang>.jsonl files, or "
                          "'github' to download them)", field="eval_set")
    for name in (f"test_{lang}.jsonl", f"{lang}.jsonl"):
        if (folder / name).is_file():
            return parse_file(folder / name, lang)
    raise DataError(f"no test_{lang}.jsonl for language {lang!r}", path=str(folder))


def resolve_eval_set(eval_set: str) -> str | None:
    """``None`` for the project's own prompts, else the study-1 source of an ``eval_set`` value:
    ``embedded`` | ``study1`` (GitHub) | ``study1@<commit>`` | ``study1:<folder>``."""
    if eval_set == "embedded":
        return None
    if eval_set == "study1":
        return "github"
    if eval_set.startswith("study1@"):
        return "github@" + eval_set.split("@", 1)[1]
    if eval_set.startswith("study1:") and eval_set[len("study1:"):].strip():
        return eval_set[len("study1:"):]
    from polyinstruct.registry import suggest

    raise ConfigError(f"unknown eval_set {eval_set!r}.{suggest(eval_set, ['embedded', 'study1'])} Use embedded, "
                      "study1, study1@<commit> or study1:<folder>", field="eval_set")
