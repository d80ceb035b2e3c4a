"""Rendering a conversation into labelled text segments.

``ChatTemplate.segments`` is the one masking rule of polyinstruct: it returns
the rendered text as consecutive pieces, each marked trained (assistant content
and its end-of-turn text) or not (system, user, scaffolding). Tokenization
encodes these pieces and copies the marks onto their tokens, so no marker is
ever searched for in token ids. Jinja chat templates (a tokenizer's own) are
cut into the same pieces by incremental rendering.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from polyinstruct.data.records import ROLES, Conversation, Message
from polyinstruct.errors import DataError
from polyinstruct.fileio import atomic_open
from polyinstruct.templates.spec import Segment, TemplateError, TemplateSpec, fill  # noqa: F401 - Segment re-exported

log = logging.getLogger(__name__)
_COT_SLOTS = re.compile(r"\{(content|cot)\}")


@dataclass(frozen=True)
class Msg:
    role: str
    content: str
    language: str | None = None
    input: str | None = None  # Alpaca "input" field of a user message


def as_msgs(messages: Iterable[Any] | Conversation, record_id: str | None = None) -> list[Msg]:
    """Accept Conversation, Message objects or {"role", "content"} dicts."""
    meta_input = None
    conv_lang = None
    if isinstance(messages, Conversation):
        record_id = record_id or messages.id
        meta_input = messages.meta.get("input") if messages.meta else None
        conv_lang = messages.language
        messages = messages.messages
    out: list[Msg] = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            role, content, lang, inp = m.role, m.content, m.language, m.input
        elif isinstance(m, dict):
            role, content, lang, inp = m.get("role"), m.get("content"), m.get("language"), m.get("input")
        elif isinstance(m, Msg):
            out.append(m)
            continue
        else:
            raise DataError(f"message must be a dict or Message, got {type(m).__name__}",
                            field=f"messages[{i}]", record_id=record_id, path=record_id)
        if role not in ROLES:
            raise DataError(f"role must be one of {ROLES}, got {role!r}", field=f"messages[{i}].role",
                            record_id=record_id, path=record_id)
        if not isinstance(content, str):
            raise DataError(f"content must be a string, got {type(content).__name__}",
                            field=f"messages[{i}].content", record_id=record_id, path=record_id)
        out.append(Msg(role, content, lang or conv_lang, inp))
    if meta_input:
        for i, m in enumerate(out):
            if m.role == "user":
                if not m.input:
                    out[i] = replace(m, input=str(meta_input))
                break
    return out


class ChatTemplate:
    """A chat format bound (optionally) to a tokenizer.

    Public: ``name``, ``spec``, ``stop_strings``, ``segments``, ``render``,
    ``render_prompt``, ``encode_prompt``, ``bind``, ``save``.
    ``render_prompt`` never contains the BOS token: ``encode_prompt`` adds it
    exactly as training does (see ``polyinstruct.templates.tokenize``).
    """

    def __init__(self, spec: TemplateSpec, tokenizer: Any = None):
        self.spec = spec
        self.tokenizer = tokenizer
        if tokenizer is not None:
            eos = getattr(tokenizer, "eos_token", None)
            bos = getattr(tokenizer, "bos_token", None)
            self.spec = replace(spec, eos_token=eos or spec.eos_token, bos_token=bos or spec.bos_token)
        if self.spec.kind == "jinja":
            from polyinstruct.templates.jinja import JinjaRenderer

            self._jinja = JinjaRenderer(self.spec, tokenizer)
        else:
            self._jinja = None
            self._with_input = self.spec.variant("with_input")
            # scaffolding with {eos}/{bos} resolved once (not per conversation)
            self._fixed = {id(sp): tuple(sp.resolve_specials(getattr(sp, f) or "")
                                         for f in ("assistant", "eot", "assistant_suffix"))
                           for sp in (self.spec, self._with_input)}

    # ---------------------------------------------------------------- basics
    @property
    def name(self) -> str:
        return self.spec.name

    def __reduce__(self):  # compiled jinja objects do not pickle; rebuild (datasets.map num_proc)
        return (ChatTemplate, (self.spec, self.tokenizer))

    def __repr__(self) -> str:
        return f"ChatTemplate({self.name!r}, language={self.spec.language!r}, cot={self.spec.cot})"

    def bind(self, tokenizer: Any) -> "ChatTemplate":
        """The same template with {eos}/{bos} meaning this tokenizer's tokens."""
        return self if tokenizer is self.tokenizer else ChatTemplate(self.spec, tokenizer)

    @property
    def stop_strings(self) -> list[str]:
        """End-of-turn texts that end generation (what the model was trained to emit)."""
        if self._jinja is not None:
            return self._jinja.stop_strings()
        out = [self.spec.resolve_specials(s) for s in self.spec.stop_strings] or [
            self.spec.resolve_specials(self.spec.eot).strip()]
        return [s for s in dict.fromkeys(out) if s]

    @property
    def eot_text(self) -> str:
        return self.spec.resolve_specials(self.spec.eot) if self._jinja is None else self._jinja.eot()

    def save(self, path: str | Path) -> Path:
        """Write the exact (resolved) template; ``load_template(path)`` restores it."""
        path = Path(path)
        with atomic_open(path) as f:
            f.write(f"# polyinstruct chat template ({self.name}); load with polyinstruct.templates.load_template\n")
            f.write(self.spec.to_yaml())
        return path

    # ------------------------------------------------------------- rendering
    def segments(self, messages: Iterable[Any] | Conversation, *, add_generation_prompt: bool = False,
                 record_id: str | None = None) -> list[Segment]:
        """Rendered text as labelled pieces; joined they equal ``render(messages)``."""
        msgs = as_msgs(messages, record_id)
        if self.spec.cot:
            msgs = [self._with_cot(m) for m in msgs]
        if self._jinja is not None:
            return self._jinja.segments(msgs, add_generation_prompt, record_id)
        return self._format_segments(msgs, add_generation_prompt, record_id)

    def render(self, messages: Iterable[Any] | Conversation, *, add_generation_prompt: bool = False) -> str:
        return "".join(s.text for s in self.segments(messages, add_generation_prompt=add_generation_prompt))

    def render_prompt(self, messages: Iterable[Any] | Conversation) -> str:
        """Text to feed a model for its next assistant turn: exactly the training-time prefix (no BOS)."""
        return self.render(messages, add_generation_prompt=True)

    def encode_prompt(self, messages: Iterable[Any] | Conversation, tokenizer: Any = None) -> list[int]:
        """Token ids of ``render_prompt`` exactly as training encodes them (BOS policy included)."""
        from polyinstruct.templates.encode import TokenizerInfo, encode_segments

        tok = tokenizer or self.tokenizer
        if tok is None:
            raise TemplateError("encode_prompt needs a tokenizer", field="tokenizer")
        segs = self.bind(tok).segments(messages, add_generation_prompt=True)
        info = TokenizerInfo.probe(tok)
        return encode_segments([segs], tok, info, self.spec.bos)[0].ids

    # --------------------------------------------------------------- helpers
    def _with_cot(self, m: Msg) -> Msg:
        if m.role != "user":
            return m
        lang = self.spec.language or m.language or "en"
        phrase = self.spec.cot_phrases.get(lang) or self.spec.cot_phrases.get("en")
        if not phrase:
            return m
        # one pass over the format: "{cot}" or "{content}" typed by a user stays as typed
        parts = {"content": m.content, "cot": phrase}
        return replace(m, content=_COT_SLOTS.sub(lambda g: parts[g.group(1)], self.spec.cot_format))

    def _format_segments(self, msgs: list[Msg], add_gen: bool, record_id: str | None) -> list[Segment]:
        spec = self.spec
        first_user = next((m for m in msgs if m.role == "user"), None)
        if first_user is not None and first_user.input and "with_input" in spec.variants:
            spec = self._with_input
        start = 0
        system_text = spec.default_system
        if msgs and msgs[0].role == "system":
            system_text, start = msgs[0].content, 1
        assistant, eot, suffix = self._fixed[id(spec)]
        segs: list[Segment] = []
        pending_system = None
        if system_text is not None:
            if spec.system is not None:
                segs.append(Segment(fill(spec.system, {"content": system_text}), False, 0))
            else:
                pending_system = system_text
        seen_user = False
        for i in range(start, len(msgs)):
            m = msgs[i]
            if m.role == "user":
                if not seen_user and pending_system is not None:
                    fmt = spec.user_first_with_system
                elif not seen_user:
                    fmt = spec.user_first or spec.user
                else:
                    fmt = spec.user
                content = m.content
                if m.input and "{input}" not in fmt:
                    content = f"{content}\n\n{m.input}"
                text = fill(fmt, {"content": content, "input": m.input or "", "system": pending_system or "",
                                  "eos": spec.eos_token, "bos": spec.bos_token})
                if not seen_user:
                    pending_system = None
                seen_user = True
                segs.append(Segment(text, False, i))
            elif m.role == "assistant":
                if pending_system is not None:
                    raise TemplateError(f"template {spec.name!r} folds the system prompt into the first user turn, "
                                        f"but conversation {record_id or '?'} has no user turn before the assistant",
                                        field="messages")
                if assistant:
                    segs.append(Segment(assistant, False, i))
                if m.content:
                    segs.append(Segment(m.content, True, i))
                segs.append(Segment(eot, True, i))
                if suffix:
                    segs.append(Segment(suffix, False, i))
            else:  # a system message after the first position
                if spec.system is None:
                    raise DataError(f"template {spec.name!r} supports a system message only first",
                                    field=f"messages[{i}].role", record_id=record_id, path=record_id)
                segs.append(Segment(fill(spec.system, {"content": m.content}), False, i))
        if pending_system is not None and add_gen:
            raise TemplateError(f"template {spec.name!r} needs a user turn to carry the system prompt",
                                field="messages")
        if add_gen and assistant:
            segs.append(Segment(assistant, False, len(msgs)))
        return segs
