"""Choose how a local model's prompts are rendered, and say which choice was made.

A model must be prompted the way it was trained. The order of preference:

1. an explicit ``template`` (a name, a ``template.yaml`` path, or a template object);
2. the run directory's ``template.yaml`` (written by training, the exact template used);
3. the tokenizer's own chat template (instruct models such as SmolLM2);
4. the ``tulu`` template (Tulu's ``<|user|>`` / ``<|assistant|>`` format).

The decision is logged and kept on the ``PromptFormat`` (``source``) so predictions
and servers can report it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "tulu"


@dataclass
class PromptFormat:
    """A rendering function from chat messages to the prompt text, plus its stop strings."""

    name: str
    render: Callable[[list[dict[str, str]]], str]
    stop_strings: list[str] = field(default_factory=list)
    source: str = ""  # "explicit" | "run_dir" | "tokenizer" | "default"
    # Token ids exactly as training encodes the prompt (BOS policy included), when the
    # template can say; else the backend tokenizes ``render``'s text.
    encode: Callable[[list[dict[str, str]]], list[int]] | None = None


def _from_template_object(obj: Any, name: str, source: str, tokenizer: Any = None) -> PromptFormat:
    """Adapt a ``polyinstruct.templates.ChatTemplate`` (``render_prompt``, ``encode_prompt``, ``stop_strings``)."""

    def render(messages: list[dict[str, str]]) -> str:
        return obj.render_prompt(messages)

    encode = None
    if tokenizer is not None and hasattr(obj, "encode_prompt"):
        def encode(messages: list[dict[str, str]]) -> list[int]:
            return list(obj.encode_prompt(messages, tokenizer))

    stops = list(getattr(obj, "stop_strings", None) or [])
    return PromptFormat(name=getattr(obj, "name", None) or name, render=render, stop_strings=stops, source=source,
                        encode=encode)


def _load_named(name_or_path: str, tokenizer: Any, source: str) -> PromptFormat:
    from polyinstruct.templates import load_template

    return _from_template_object(load_template(name_or_path, tokenizer=tokenizer), str(name_or_path), source,
                                 tokenizer)


def find_run_template(model_path: str | Path) -> Path | None:
    """``template.yaml`` of a run directory, given the run dir or its model/ or adapter/ folder."""
    p = Path(model_path)
    if not p.exists():
        return None
    for cand in (p / "template.yaml", p.parent / "template.yaml"):
        if cand.is_file() and (cand.parent == p or p.name in ("model", "adapter")):
            return cand
    return None


def tokenizer_format(tokenizer: Any, source: str = "tokenizer") -> PromptFormat:
    """Render with the tokenizer's own chat template (``add_generation_prompt=True``)."""

    def render(messages: list[dict[str, str]]) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return PromptFormat(name="tokenizer", render=render, stop_strings=[], source=source)


def resolve_prompt_format(model_path: str | Path | None, tokenizer: Any = None,
                          template: Any = None) -> PromptFormat:
    """Pick the prompt format for a model (see the module docstring for the order)."""
    if isinstance(template, PromptFormat):
        fmt = template
    elif template is not None and hasattr(template, "render_prompt"):
        fmt = _from_template_object(template, "custom", "explicit", tokenizer)
    elif callable(template):
        fmt = PromptFormat("custom", template, [], "explicit")
    elif template is not None:
        fmt = _load_named(str(template), tokenizer, "explicit")
    elif model_path is not None and (run_tpl := find_run_template(model_path)) is not None:
        fmt = _load_named(str(run_tpl), tokenizer, "run_dir")
    elif tokenizer is not None and getattr(tokenizer, "chat_template", None):
        try:
            fmt = _load_named("tokenizer", tokenizer, "tokenizer")
        except Exception as e:  # noqa: BLE001 - a template the templates package cannot parse
            log.warning("templates package cannot use the tokenizer's chat template (%s); "
                        "rendering with apply_chat_template", e)
            fmt = tokenizer_format(tokenizer)
    else:
        fmt = _load_named(DEFAULT_TEMPLATE, tokenizer, "default")
    log.info("prompt template: %s (from %s)", fmt.name, fmt.source)
    return fmt
