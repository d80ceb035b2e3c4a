"""A scripted translator behind the loopback OpenAI-compatible server (tests/judge/fake_server.py).

It answers the translation prompt of ``polyinstruct.translate.engines`` with the
embedded reference translation of the English sentence (tags kept in place), so
language ID sees real French or Spanish. ``overrides`` make it misbehave for
chosen sentences: answer in another language, copy the source, drop a tag.
"""

from __future__ import annotations

import re
import threading

from polyinstruct.data.embedded import load_parallel_pairs

TAG = re.compile(r"(<x\d+/>)")
_TARGET = re.compile(r"from \w+ to (\w+)\.")
NAMES = {"French": "fr", "Spanish": "es", "English": "en"}


def references() -> dict[str, dict[str, str]]:
    """``{lang: {english sentence: reference}}`` for fr and es, plus reverse entries for back-translation."""
    out: dict[str, dict[str, str]] = {}
    for lang in ("fr", "es"):
        pairs = load_parallel_pairs(lang)
        out[lang] = {en: xx for _, en, xx in pairs}
        out.setdefault("en", {}).update({xx: en for _, en, xx in pairs})
    return out


def english_sentences(n: int, *, offset: int = 0, digits: bool = False) -> list[str]:
    """The first ``n`` embedded English sentences whose translation keeps their numbers."""
    pairs = load_parallel_pairs("fr")
    out = []
    for _, en, fr in pairs[offset:]:
        has = bool(re.search(r"\d", en))
        if has and not digits:
            continue
        out.append(en)
        if len(out) == n:
            break
    return out


class ScriptedTranslator:
    """``script(body, n)`` for ``ScriptedServer``; thread-safe; counts what it translated."""

    def __init__(self, overrides: dict[str, str] | None = None, block_after: int | None = None):
        self.refs = references()
        self.overrides = dict(overrides or {})  # english sentence -> "es" | "copy" | "droptag"
        self.block_after = block_after
        self.release = threading.Event()
        self.translated: list[str] = []
        self._lock = threading.Lock()

    def translate(self, text: str, tgt: str) -> str:
        parts = TAG.split(text)
        out = []
        for p in parts:
            if TAG.fullmatch(p) or not p.strip():
                out.append(p)
                continue
            core = p.strip()
            mode = self.overrides.get(core)
            if mode == "copy":
                tr = core
            elif mode in ("es", "fr"):
                tr = self.refs[mode][core]
            else:
                tr = self.refs[tgt].get(core, core)
            out.append(p[:len(p) - len(p.lstrip())] + tr + p[len(p.rstrip()):])
        result = "".join(out)
        if self.overrides.get(TAG.sub("", text).strip()) == "droptag":
            result = TAG.sub("", result)
        return result

    def __call__(self, body: dict, n: int) -> tuple:
        prompt = body["messages"][-1]["content"]
        tgt = NAMES[_TARGET.search(prompt).group(1)]
        text = prompt.split("\n\n", 1)[1]
        if self.block_after is not None and n >= self.block_after:
            self.release.wait(60)
            return ("status", 503)
        with self._lock:
            self.translated.append(text)
        return ("ok", self.translate(text, tgt))
