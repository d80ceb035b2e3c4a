"""Template specifications: chat formats declared as data (YAML), not classes.

A spec lists the text around each role with a few placeholders (``{content}``,
``{system}``, ``{input}``, ``{eos}``, ``{bos}``). Only these names are
substituted, once, so braces in message contents or scaffolding are safe.
Per-language wording (``languages:``) and input variants (``variants:``) are
field overrides applied before rendering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from polyinstruct.yamlio import safe_load
from polyinstruct.errors import ConfigError

PLACEHOLDER = re.compile(r"\{(content|system|input|eos|bos)\}")
BOS_POLICIES = ("auto", "always", "never")
_FORMAT_FIELDS = ("system", "default_system", "user", "user_first", "user_first_with_system",
                  "assistant", "eot", "assistant_suffix")


class TemplateError(ConfigError):
    """A template file or value is invalid; names the file and field."""


@dataclass(frozen=True)
class TemplateSpec:
    """One chat format. ``kind`` is ``format`` (fields below) or ``jinja`` (a chat_template string).

    For ``format`` specs an assistant turn renders as
    ``assistant`` (prompt side, no loss) + content + ``eot`` (trained) + ``assistant_suffix`` (no loss).
    """

    name: str
    kind: str = "format"
    description: str = ""
    bos: str = "auto"  # auto: add BOS exactly when the tokenizer adds it by default
    system: str | None = None  # None: system text is folded into user_first_with_system
    default_system: str | None = None  # used when a conversation has no system message
    user: str = "{content}\n"
    user_first: str | None = None
    user_first_with_system: str | None = None
    assistant: str = ""
    eot: str = "{eos}"
    assistant_suffix: str = ""
    stop_strings: tuple[str, ...] = ()
    eos_token: str = "</s>"  # what {eos} means until bound to a tokenizer
    bos_token: str = "<s>"
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    languages: dict[str, dict[str, Any]] = field(default_factory=dict)
    language: str | None = None  # the language whose overrides were applied
    cot: bool = False  # append the chain-of-thought phrase to each user turn
    cot_phrases: dict[str, str] = field(default_factory=dict)
    cot_format: str = "{content}\n{cot}"
    chat_template: str | None = None  # kind == "jinja" only

    def __hash__(self) -> int:  # dict fields: hash the canonical YAML instead
        return hash(self.to_yaml())

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        defaults = TemplateSpec(name=self.name)
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "name" or v != getattr(defaults, f.name) or f.name in ("kind", "bos", "eot"):
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), allow_unicode=True, sort_keys=False, width=10_000)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, file: str | None = None) -> "TemplateSpec":
        if not isinstance(d, dict):
            raise TemplateError("a template file must hold a mapping", file=file)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            from polyinstruct.registry import suggest

            raise TemplateError(f"unknown key {unknown[0]!r}.{suggest(unknown[0], sorted(known))}",
                                file=file, field=unknown[0])
        if "name" not in d:
            raise TemplateError("missing required key 'name'", file=file, field="name")
        d = dict(d)
        if "stop_strings" in d:
            d["stop_strings"] = tuple(d["stop_strings"] or ())
        for key in ("variants", "languages", "cot_phrases"):
            if d.get(key) is None:
                d.pop(key, None)
        spec = cls(**d)
        spec.validate(file=file)
        return spec

    @classmethod
    def from_file(cls, path: str | Path) -> "TemplateSpec":
        path = Path(path)
        try:
            data = safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark is not None else ""
            raise TemplateError(f"invalid YAML{line}: {getattr(e, 'problem', e)}", file=str(path)) from None
        except OSError as e:
            raise TemplateError(f"cannot read template: {e.strerror}", file=str(path)) from None
        return cls.from_dict(data, file=str(path))

    # ------------------------------------------------------------ checking
    def validate(self, *, file: str | None = None) -> None:
        if self.kind not in ("format", "jinja"):
            raise TemplateError(f"kind must be 'format' or 'jinja', got {self.kind!r}", file=file, field="kind")
        if self.bos not in BOS_POLICIES:
            raise TemplateError(f"bos must be one of {BOS_POLICIES}, got {self.bos!r}", file=file, field="bos")
        if self.kind == "jinja":
            if not self.chat_template:
                raise TemplateError("a jinja template needs 'chat_template'", file=file, field="chat_template")
            return
        for name in _FORMAT_FIELDS:
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise TemplateError(f"must be a string, got {type(v).__name__}", file=file, field=name)
        for name in ("user", "user_first", "user_first_with_system", "system"):
            v = getattr(self, name)
            if v is not None and "{content}" not in v:
                raise TemplateError("must contain the {content} placeholder", file=file, field=name)
        if self.system is None and self.user_first_with_system is None:
            raise TemplateError("needs either 'system' or 'user_first_with_system'", file=file, field="system")
        if not self.eot:
            raise TemplateError("eot (the end-of-turn text the model learns to emit) must not be empty",
                                file=file, field="eot")
        for key, over in list(self.variants.items()) + list(self.languages.items()):
            bad = sorted(set(over) - set(_FORMAT_FIELDS) - {"variants", "stop_strings"})
            if bad:
                raise TemplateError(f"override of unknown field {bad[0]!r}", file=file, field=f"{key}.{bad[0]}")

    # ------------------------------------------------------------ variants
    def with_overrides(self, over: dict[str, Any]) -> "TemplateSpec":
        over = dict(over)
        if "variants" in over:
            merged = {k: dict(v) for k, v in self.variants.items()}
            for k, v in over.pop("variants").items():
                merged.setdefault(k, {}).update(v)
            over["variants"] = merged
        if "stop_strings" in over:
            over["stop_strings"] = tuple(over["stop_strings"])
        return replace(self, **over)

    def for_language(self, language: str | None) -> "TemplateSpec":
        """Apply ``languages[language]`` overrides (unknown language: wording unchanged)."""
        if not language or language == self.language:
            return self
        spec = self.with_overrides(self.languages.get(language, {}))
        return replace(spec, language=language)

    def variant(self, name: str) -> "TemplateSpec":
        return self.with_overrides(self.variants[name]) if name in self.variants else self

    def resolve_specials(self, text: str) -> str:
        """Replace {eos}/{bos} in scaffolding with this spec's token texts."""
        return PLACEHOLDER.sub(lambda m: {"eos": self.eos_token, "bos": self.bos_token}.get(m.group(1), m.group(0)),
                               text)


def fill(fmt: str, values: dict[str, str]) -> str:
    """Substitute the known placeholders in one pass (contents are never re-scanned)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), fmt)


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool  # True for assistant content and its end-of-turn text
    turn: int  # index of the message the text belongs to
