"""Built-in templates (YAML files in ``polyinstruct/resources/templates``) and ``load_template``."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any


from polyinstruct.yamlio import safe_load
from polyinstruct.errors import UnknownNameError
from polyinstruct.registry import suggest
from polyinstruct.templates.render import ChatTemplate
from polyinstruct.templates.spec import TemplateError, TemplateSpec

TOKENIZER_TEMPLATE = "tokenizer"
_NOT_TEMPLATES = {"cot"}


def resource_dir() -> Path:
    """The folder of the built-in template YAMLs (package data)."""
    return Path(str(resources.files("polyinstruct") / "resources" / "templates"))


def builtin_names() -> list[str]:
    names = sorted(p.stem for p in resource_dir().glob("*.yaml") if p.stem not in _NOT_TEMPLATES)
    return names + [TOKENIZER_TEMPLATE]


def cot_phrases() -> dict[str, str]:
    """Zero-shot chain-of-thought phrase per language (``resources/templates/cot.yaml``)."""
    return dict(safe_load((resource_dir() / "cot.yaml").read_text(encoding="utf-8")))


def load_template(name_or_path: str | Path, tokenizer: Any = None, *, language: str | None = None,
                  cot: bool = False) -> ChatTemplate:
    """A built-in template by name, the tokenizer's own (``"tokenizer"``), or a template YAML file.

    ``language`` applies the template's wording for that language (e.g. the
    Chinese Alpaca prompt); ``cot`` appends the chain-of-thought phrase in the
    message's language to each user turn. Unknown names raise
    ``UnknownNameError`` with suggestions.
    """
    name = str(name_or_path)
    if name == TOKENIZER_TEMPLATE:
        if tokenizer is None:
            raise TemplateError("template 'tokenizer' uses the model's own chat template and needs a tokenizer",
                                field="template")
        from polyinstruct.templates.jinja import spec_from_tokenizer

        spec = spec_from_tokenizer(tokenizer)
    else:
        path = Path(name)
        builtin = resource_dir() / f"{name}.yaml"
        if name not in _NOT_TEMPLATES and "/" not in name and builtin.is_file():
            spec = TemplateSpec.from_file(builtin)
        elif path.suffix in (".yaml", ".yml") or path.exists():
            if not path.is_file():
                raise TemplateError("template file not found", file=name)
            spec = TemplateSpec.from_file(path)
        else:
            known = builtin_names()
            raise UnknownNameError(f"unknown template {name!r}.{suggest(name, known)} Known: {', '.join(known)} "
                                   "(or a path to a template .yaml)")
    if language:
        spec = spec.for_language(language)
    if cot:
        spec = replace(spec, cot=True, cot_phrases=spec.cot_phrases or cot_phrases())
    return ChatTemplate(spec, tokenizer)
