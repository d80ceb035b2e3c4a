"""Judge prompt templates: versioned YAML data files in ``resources/judge_prompts``.

A template file holds ``name``, ``version``, ``kind`` (single | pairwise), an
optional ``scale`` and ``variants`` keyed by prompt language, each a ``system``
and a ``user`` text with ``{question}``, ``{answer}`` / ``{answer_a}``,
``{answer_b}`` placeholders. Placeholders are filled in one pass, so braces or
placeholder-like text inside answers are never re-expanded. A path to any YAML
file of the same shape works wherever a template name does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


from polyinstruct.yamlio import safe_load
from polyinstruct.errors import ConfigError, UnknownNameError
from polyinstruct.lang.codes import normalize_code
from polyinstruct.registry import suggest

_PLACEHOLDER = re.compile(r"\{(question|answer|answer_a|answer_b|reference)\}")
_KINDS = ("single", "pairwise")


@dataclass(frozen=True)
class JudgeTemplate:
    name: str
    version: int
    kind: str
    variants: dict[str, dict[str, str]]
    scale: tuple[float, float] | None = None
    integer: bool = False  # whole points only (YAML ``integer: true``): a fractional score is unparsed
    source: str = ""

    def variant_for(self, language: str | None, prompt_language: str = "en") -> str:
        """Which variant to use: ``prompt_language`` or, with ``"auto"``, the question's language if present."""
        if prompt_language == "auto":
            lang = normalize_code(language)
            return lang if lang in self.variants else ("en" if "en" in self.variants else next(iter(self.variants)))
        if prompt_language not in self.variants:
            raise ConfigError(f"template {self.name!r} has no {prompt_language!r} variant "
                              f"(has: {', '.join(sorted(self.variants))})", field="judge.prompt_language")
        return prompt_language

    def render(self, variant: str, **values: str) -> list[dict[str, str]]:
        """Chat messages for the judge: a system turn (if any) and one user turn."""
        v = self.variants[variant]
        fill = lambda text: _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)  # noqa: E731
        msgs = []
        if v.get("system"):
            msgs.append({"role": "system", "content": fill(v["system"])})
        msgs.append({"role": "user", "content": fill(v["user"])})
        return msgs


def _builtin_dir() -> Path:
    return Path(str(resources.files("polyinstruct") / "resources" / "judge_prompts"))


def available_templates() -> list[str]:
    return sorted(p.stem for p in _builtin_dir().glob("*.yaml"))


def load_template(name_or_path: str) -> JudgeTemplate:
    """Load a built-in template by name or any template YAML by path."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = _builtin_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            names = available_templates()
            raise UnknownNameError(f"unknown judge template {name_or_path!r}.{suggest(name_or_path, names)} "
                                   f"Known: {', '.join(names)}")
    with open(path, encoding="utf-8") as f:
        data = safe_load(f) or {}
    src = str(path)
    for key in ("name", "version", "kind", "variants"):
        if key not in data:
            raise ConfigError(f"missing required field {key!r}", file=src, field=key)
    if data["kind"] not in _KINDS:
        raise ConfigError(f"kind must be one of {_KINDS}", file=src, field="kind")
    variants = data["variants"]
    if not isinstance(variants, dict) or not variants:
        raise ConfigError("variants must map a language code to {system, user}", file=src, field="variants")
    needed = ("{answer_a}", "{answer_b}") if data["kind"] == "pairwise" else ("{answer}",)
    for lang, v in variants.items():
        if not isinstance(v, dict) or "user" not in v:
            raise ConfigError("each variant needs a 'user' text", file=src, field=f"variants.{lang}.user")
        for ph in ("{question}",) + needed:
            if ph not in v["user"]:
                raise ConfigError(f"user text lacks the {ph} placeholder", file=src, field=f"variants.{lang}.user")
    scale = tuple(float(x) for x in data["scale"]) if data.get("scale") else None
    if not isinstance(data.get("integer", False), bool):
        raise ConfigError("integer must be true or false", file=src, field="integer")
    if data["kind"] == "single" and (not scale or len(scale) != 2 or scale[0] >= scale[1]):
        raise ConfigError("single-answer templates need scale: [low, high]", file=src, field="scale")
    return JudgeTemplate(name=str(data["name"]), version=int(data["version"]), kind=data["kind"],
                         variants={str(k): dict(v) for k, v in variants.items()}, scale=scale,
                         integer=bool(data.get("integer", False)), source=src)


def question_text(messages: list[dict[str, str]]) -> str:
    """The question shown to the judge: the user turn, or a labelled transcript for multi-turn prompts."""
    turns = [m for m in messages if m.get("role") != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in turns)
