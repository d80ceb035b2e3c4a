"""Decoding presets by name, overrides, and stop-string trimming shared by every backend.

Trimming lives here so batch generation, streaming and the server cut replies at
exactly the same place: at the first occurrence of any stop string.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from polyinstruct.errors import ConfigError
from polyinstruct.infer.backend import DECODING_PRESETS, DecodingParams
from polyinstruct.registry import suggest

_FIELDS = {f.name for f in dataclasses.fields(DecodingParams)}


def resolve_decoding(decoding: str | DecodingParams | dict[str, Any] | None = "greedy",
                     **overrides: Any) -> DecodingParams:
    """Return a fresh ``DecodingParams`` from a preset name, a dict or params, plus overrides.

    ``None`` overrides are ignored so CLI flags left unset keep the preset's value.
    """
    if decoding is None:
        decoding = "greedy"
    if isinstance(decoding, str):
        if decoding not in DECODING_PRESETS:
            known = sorted(DECODING_PRESETS)
            raise ConfigError(f"unknown decoding preset {decoding!r}.{suggest(decoding, known)} "
                              f"Known: {', '.join(known)}", field="decoding")
        base = dataclasses.replace(DECODING_PRESETS[decoding], stop=list(DECODING_PRESETS[decoding].stop))
    elif isinstance(decoding, DecodingParams):
        base = dataclasses.replace(decoding, stop=list(decoding.stop))
    elif isinstance(decoding, dict):
        extra = sorted(set(decoding) - _FIELDS)
        if extra:
            raise ConfigError(f"unknown decoding field(s) {extra}; known: {sorted(_FIELDS)}", field="decoding")
        base = DecodingParams(**decoding)
    else:
        raise ConfigError(f"decoding must be a preset name, dict or DecodingParams, got {type(decoding).__name__}",
                          field="decoding")
    for key, value in overrides.items():
        if key not in _FIELDS:
            raise ConfigError(f"unknown decoding field {key!r}.{suggest(key, sorted(_FIELDS))}", field="decoding")
        if value is not None:
            setattr(base, key, list(value) if key == "stop" else value)
    validate_decoding(base)
    return base


def validate_decoding(p: DecodingParams) -> None:
    """Reject values that would make generation fail deep inside a library."""
    if p.max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {p.max_new_tokens}", field="decoding.max_new_tokens")
    if p.temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {p.temperature}", field="decoding.temperature")
    if not 0 < p.top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {p.top_p}", field="decoding.top_p")
    if p.repetition_penalty <= 0:
        raise ConfigError(f"repetition_penalty must be > 0, got {p.repetition_penalty}",
                          field="decoding.repetition_penalty")
    if p.do_sample and p.temperature == 0:
        p.do_sample = False  # OpenAI convention: temperature 0 means greedy


def trim_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop string; return (text, whether one was found)."""
    cut = -1
    for s in stops:
        if s:
            i = text.find(s)
            if i != -1 and (cut == -1 or i < cut):
                cut = i
    return (text[:cut], True) if cut != -1 else (text, False)


class StopTrimmer:
    """Streaming counterpart of ``trim_at_stop``: holds back text that may start a stop string."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self.stops), default=1) - 1
        self._buf = ""
        self._emitted = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add generated text; return the part that is now safe to show."""
        if self.stopped:
            return ""
        self._buf += piece
        text, hit = trim_at_stop(self._buf, self.stops)
        if hit:
            self.stopped = True
            out = text[self._emitted:]
            self._emitted = len(text)
            return out
        safe = len(self._buf) - self._hold if self._hold else len(self._buf)
        if safe <= self._emitted:
            return ""
        out = self._buf[self._emitted:safe]
        self._emitted = safe
        return out

    def flush(self) -> str:
        """Text still held back when generation ended without a stop string."""
        if self.stopped:
            return ""
        out = self._buf[self._emitted:]
        self._emitted = len(self._buf)
        return out
