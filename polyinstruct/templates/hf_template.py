"""A polyinstruct template as a tokenizer ``chat_template`` (Jinja), so a trained model's folder
prompts itself correctly in tools that never heard of polyinstruct.

``tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=g)`` renders
byte for byte what ``ChatTemplate.render(messages, add_generation_prompt=g)`` renders, with the
BOS text first exactly when training put a BOS id first (the template's ``bos`` policy on this
tokenizer), so ``apply_chat_template(..., tokenize=True)`` starts with BOS as training did.
Message fields polyinstruct reads are honoured: an Alpaca ``input`` on the first user turn
(the template's ``with_input`` wording), a message's ``language`` for chain-of-thought
templates. Errors the project raises (a system message where the template cannot put one)
are ``raise_exception`` calls, as in Hugging Face templates.
"""

from __future__ import annotations

from typing import Any

from polyinstruct.templates.render import ChatTemplate
from polyinstruct.templates.spec import PLACEHOLDER, TemplateSpec

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _lit(text: str) -> str:
    """A Jinja string literal of ``text``."""
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def _out(expr: str) -> str:
    return "{{- " + expr + " -}}"


def _fill(fmt: str, values: dict[str, str], spec: TemplateSpec) -> str:
    """Output tags for ``fmt`` with its placeholders bound to Jinja expressions (as ``spec.fill``)."""
    parts: list[str] = []
    pos = 0
    for m in PLACEHOLDER.finditer(fmt):
        if m.start() > pos:
            parts.append(_lit(fmt[pos:m.start()]))
        name = m.group(1)
        if name == "eos":
            parts.append(_lit(spec.eos_token))
        elif name == "bos":
            parts.append(_lit(spec.bos_token))
        else:
            parts.append(values.get(name, _lit(m.group(0))))
        pos = m.end()
    if pos < len(fmt):
        parts.append(_lit(fmt[pos:]))
    return _out(" ~ ".join(parts)) if parts else ""


def _user_content(spec: TemplateSpec, fmt: str) -> str:
    """The user turn's content: chain-of-thought phrase (if any), then an Alpaca input the
    format has no ``{input}`` slot for after a blank line (as ``_format_segments``)."""
    content = "c"
    if "{input}" not in fmt:
        content = '(c ~ ("\\n\\n" ~ m.input if (m.input is defined and m.input) else ""))'
    return content


def _body(spec: TemplateSpec) -> list[str]:
    eos, bos = spec.eos_token, spec.bos_token
    res = lambda s: s.replace("{eos}", eos).replace("{bos}", bos)  # noqa: E731 - scaffolding's specials
    assistant, eot, suffix = res(spec.assistant), res(spec.eot), res(spec.assistant_suffix)
    user_first = spec.user_first or spec.user
    lines = [
        "{%- set st = namespace(system=" + (_lit(spec.default_system) if spec.default_system is not None
                                            else "none") + ", start=0, pending=none, seen=false) -%}",
        "{%- if messages and messages[0].role == 'system' -%}"
        "{%- set st.system = messages[0].content -%}{%- set st.start = 1 -%}{%- endif -%}",
        "{%- if st.system is not none -%}",
        _fill(spec.system, {"content": "st.system"}, spec) if spec.system is not None
        else "{%- set st.pending = st.system -%}",
        "{%- endif -%}",
        "{%- for m in messages[st.start:] -%}",
        "{%- if m.role == 'user' -%}",
    ]
    if spec.cot and spec.cot_phrases:
        phrases = "{" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in sorted(spec.cot_phrases.items())) + "}"
        lang = _lit(spec.language) if spec.language else \
            "(m.language if (m.language is defined and m.language) else 'en')"
        lines += ["{%- set ph = namespace(p=" + phrases + ") -%}",
                  "{%- set phrase = ph.p.get(" + lang + ") or ph.p.get('en') -%}",
                  "{%- if phrase -%}{%- set c = " + _cot_expr(spec.cot_format) + " -%}"
                  "{%- else -%}{%- set c = m.content -%}{%- endif -%}"]
    else:
        lines.append("{%- set c = m.content -%}")
    inp = '(m.input if (m.input is defined and m.input) else "")'
    if spec.user_first_with_system is not None:
        lines += ["{%- if not st.seen and st.pending is not none -%}",
                  _fill(spec.user_first_with_system, {"content": _user_content(spec, spec.user_first_with_system),
                                                      "input": inp, "system": "st.pending"}, spec),
                  "{%- elif not st.seen -%}"]
    else:
        lines.append("{%- if not st.seen -%}")
    lines += [_fill(user_first, {"content": _user_content(spec, user_first), "input": inp, "system": '""'}, spec),
              "{%- else -%}",
              _fill(spec.user, {"content": _user_content(spec, spec.user), "input": inp, "system": '""'}, spec),
              "{%- endif -%}",
              "{%- set st.pending = none -%}{%- set st.seen = true -%}",
              "{%- elif m.role == 'assistant' -%}",
              "{%- if st.pending is not none -%}{{- raise_exception(" + _lit(
                  f"template {spec.name!r} folds the system prompt into the first user turn, but the conversation "
                  "has no user turn before the assistant") + ") -}}{%- endif -%}"]
    if assistant:
        lines.append(_out(_lit(assistant)))
    lines += ["{{- m.content -}}", _out(_lit(eot))]
    if suffix:
        lines.append(_out(_lit(suffix)))
    lines.append("{%- else -%}")
    if spec.system is None:
        lines.append("{{- raise_exception(" + _lit(f"template {spec.name!r} supports a system message only first")
                     + ") -}}")
    else:
        lines.append(_fill(spec.system, {"content": "m.content"}, spec))
    lines += ["{%- endif -%}", "{%- endfor -%}",
              "{%- if add_generation_prompt -%}",
              "{%- if st.pending is not none -%}{{- raise_exception(" + _lit(
                  f"template {spec.name!r} needs a user turn to carry the system prompt") + ") -}}{%- endif -%}"]
    if assistant:
        lines.append(_out(_lit(assistant)))
    lines.append("{%- endif -%}")
    return lines


def _cot_expr(cot_format: str) -> str:
    parts, pos = [], 0
    for m in __import__("re").finditer(r"\{(content|cot)\}", cot_format):
        if m.start() > pos:
            parts.append(_lit(cot_format[pos:m.start()]))
        parts.append("m.content" if m.group(1) == "content" else "phrase")
        pos = m.end()
    if pos < len(cot_format):
        parts.append(_lit(cot_format[pos:]))
    return "(" + " ~ ".join(parts or ['""']) + ")"


def adds_bos(template: ChatTemplate, tokenizer: Any) -> bool:
    """Whether training puts the BOS id first for this template on this tokenizer."""
    from polyinstruct.templates.tokenize import TokenizerInfo

    return TokenizerInfo.probe(tokenizer).add_bos(template.spec.bos)


def to_chat_template(template: ChatTemplate, tokenizer: Any) -> str:
    """The Jinja ``chat_template`` that renders as ``template`` does on ``tokenizer``."""
    tpl = template.bind(tokenizer)
    spec = tpl.spec
    if spec.kind == "jinja":
        return str(spec.chat_template)  # the model's own template: it renders its BOS itself
    head = f"{{#- polyinstruct chat template {spec.name!r}: renders as polyinstruct trained with it -#}}"
    lines = [head]
    if adds_bos(tpl, tokenizer) and tokenizer.bos_token:
        lines.append("{{- bos_token -}}")
    variant = spec.variant("with_input") if "with_input" in spec.variants else None
    if variant is not None:
        lines += ["{%- set fu = namespace(m=none) -%}",
                  "{%- for m in messages -%}{%- if m.role == 'user' and fu.m is none -%}"
                  "{%- set fu.m = m -%}{%- endif -%}{%- endfor -%}",
                  "{%- if fu.m is not none and fu.m.input is defined and fu.m.input -%}",
                  *_body(variant), "{%- else -%}", *_body(spec), "{%- endif -%}"]
    else:
        lines += _body(spec)
    return "\n".join(lines)


def attach_chat_template(template: ChatTemplate, tokenizer: Any) -> None:
    """Set ``tokenizer.chat_template`` to ``template`` (saved with the tokenizer from then on)."""
    tokenizer.chat_template = to_chat_template(template, tokenizer)
