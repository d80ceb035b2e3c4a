"""Choose how a local model's prompts are rendered, and say which choice was made.

A model must be prompted the way it was trained. The order of preference:

1. an explicit ``template`` (a name, a ``template.yaml`` path, or a template object);
2. the run directory's ``template.yaml`` (written by training, the exact template used);
3. the tokenizer's own chat template (instruct models such as SmolLM2);
4. the ``tulu`` template (Tulu's ``<|user|>`` / ``<|assistant|>`` format).

The decision is logged and kept on the ``PromptFormat`` (``source``) so predictions
and servers can report it. A template's stop strings are its end-of-turn text plus the
markers that open the next turn (``next_turn_markers``), so a base model that keeps
writing the conversation stops where its answer ends (docs/inference.md).
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


_PROBE = ("PQXUSERONEPQX", "PQXASSISTANTONEPQX", "PQXUSERTWOPQX")


def next_turn_markers(obj: Any) -> list[str]:
    """The text that opens the next user turn and the assistant turn, from the template itself.

    A base model prompted in a chat format often keeps writing the conversation
    (``<|user|> ... <|assistant|> ...``) until the token limit; these markers are added
    to the stop strings so generation ends where the answer ends. They are read off a
    rendered probe conversation (user, assistant, user + generation prompt): the text
    between the first answer and the second question (end-of-turn and BOS/EOS tokens
    removed) and the generation prompt after the last question. Markers that are empty,
    longer than 60 characters (a system prompt, not a marker) or plain words are skipped.
    """
    u1, a1, u2 = _PROBE
    try:
        text = obj.render([{"role": "user", "content": u1}, {"role": "assistant", "content": a1},
                           {"role": "user", "content": u2}], add_generation_prompt=True)
        between = text[text.index(a1) + len(a1):text.index(u2)]
        after = text[text.index(u2) + len(u2):]
    except Exception as e:  # noqa: BLE001 - a template that cannot render the probe has no markers
        log.debug("no next-turn markers for template %r: %s", getattr(obj, "name", obj), e)
        return []
    specials = [str(t) for t in (*(getattr(obj, "stop_strings", None) or []),
                                 getattr(getattr(obj, "spec", None), "eos_token", None),
                                 getattr(getattr(obj, "spec", None), "bos_token", None)) if t]
    out = []
    for chunk in (between, after):
        for sp in sorted(set(specials), key=len, reverse=True):
            chunk = chunk.replace(sp, "")
        marker = chunk.strip()
        if marker and len(marker) <= 60 and not marker.replace(" ", "").isalnum():
            out.append(marker)
    return list(dict.fromkeys(out))


def _from_template_object(obj: Any, name: str, source: str, tokenizer: Any = None) -> PromptFormat:
    """Adapt a ``polyinstruct.templates.ChatTemplate`` (``render_prompt``, ``encode_prompt``, ``stop_strings``)."""

    def render(messages: list[dict[str, str]]) -> str:
        return obj.render_prompt(messages)

    encode = None
    if tokenizer is not None and hasattr(obj, "encode_prompt"):
        def encode(messages: list[dict[str, str]]) -> list[int]:
            return list(obj.encode_prompt(messages, tokenizer))

    stops = list(dict.fromkeys([*(getattr(obj, "stop_strings", None) or []), *next_turn_markers(obj)]))
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
        # a user turn's Alpaca "input" follows its content after a blank line, as in training (docs/data.md)
        messages = [{**m, "content": f"{m['content']}\n\n{m['input']}"} if m.get("input") else m for m in messages]
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
