"""Jinja chat templates (a model's own ``chat_template``) cut into labelled segments.

Incremental rendering: for each assistant turn k, the text rendered for
messages[:k] with the generation prompt must be a prefix of the text rendered
for messages[:k+1]; the difference is the assistant content followed by the
end-of-turn text. Templates that rewrite earlier turns (for example ones that
drop past reasoning) break this and are rejected with a clear error instead of
being masked approximately.
"""

from __future__ import annotations

from typing import Any

from polyinstruct.errors import DataError
from polyinstruct.templates.spec import Segment, TemplateError, TemplateSpec

_PROBE = [{"role": "user", "content": "PROBE_USER"}, {"role": "assistant", "content": "PROBE_ANSWER"}]


def _compile(source: str):
    """Compile like transformers' apply_chat_template (its helper is private, so fall back to the same setup)."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:  # pragma: no cover - depends on the transformers version
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = raise_exception
        return env.from_string(source)
    return _compile_jinja_template(source)


class JinjaRenderer:
    def __init__(self, spec: TemplateSpec, tokenizer: Any = None):
        self.spec = spec
        self.tokenizer = tokenizer
        try:
            self._compiled = _compile(spec.chat_template)
        except Exception as e:  # jinja2.TemplateSyntaxError and friends
            raise TemplateError(f"chat_template does not compile: {e}", field="chat_template") from None
        self._eot: str | None = None

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        try:
            text = self._compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         bos_token=self.spec.bos_token, eos_token=self.spec.eos_token)
        except Exception as e:
            raise TemplateError(f"chat template {self.spec.name!r} failed to render: {e}",
                                field="chat_template") from None
        bos = self.spec.bos_token
        if self.spec.bos == "always" and bos and text.startswith(bos):
            text = text[len(bos):]  # BOS is added as a token id by the tokenization policy
        return text

    def eot(self) -> str:
        if self._eot is None:
            prefix = self.render(_PROBE[:1], True)
            full = self.render(_PROBE, False)
            tail = full[len(prefix):]
            i = tail.find("PROBE_ANSWER")
            self._eot = tail[i + len("PROBE_ANSWER"):].rstrip() if i >= 0 else ""
        return self._eot

    def stop_strings(self) -> list[str]:
        e = self.eot().strip()
        return [e] if e else [self.spec.eos_token]

    def segments(self, msgs: list, add_generation_prompt: bool, record_id: str | None):
        # a user turn's Alpaca input follows its content after a blank line (docs/data.md)
        dicts = [{"role": m.role, "content": f"{m.content}\n\n{m.input}" if m.input else m.content} for m in msgs]
        segs: list[Segment] = []
        prev = ""
        eot = self.eot()

        def check_prefix(text: str, before: str, k: int) -> None:
            if not text.startswith(before):
                raise DataError(f"chat template {self.spec.name!r} is not prefix-stable at message {k}: "
                                "rendering more messages changed earlier text, so the loss mask cannot be "
                                "derived exactly; use a polyinstruct template instead",
                                record_id=record_id, path=record_id, field=f"messages[{k}]")

        for k, m in enumerate(dicts):
            if m["role"] != "assistant":
                continue
            p = self.render(dicts[:k], True) if k else self.render([], True)
            check_prefix(p, prev, k)
            full = self.render(dicts[:k + 1], False)
            check_prefix(full, p, k)
            if p[len(prev):]:
                segs.append(Segment(p[len(prev):], False, k))
            rest = full[len(p):]
            content = m["content"]
            if not rest.startswith(content):
                if content.strip() and rest.startswith(content.strip()):
                    content = content.strip()  # the template trims contents; train on what it renders
                else:
                    raise DataError(f"chat template {self.spec.name!r} does not render assistant message {k} "
                                    f"verbatim after the generation prompt (got {rest[:60]!r})",
                                    record_id=record_id, path=record_id, field=f"messages[{k}].content")
            tail = rest[len(content):]
            if not tail.startswith(eot):
                raise DataError(f"chat template {self.spec.name!r}: assistant message {k} is not followed by "
                                f"the end-of-turn text {eot!r} (got {tail[:40]!r})",
                                record_id=record_id, path=record_id, field=f"messages[{k}]")
            if content:
                segs.append(Segment(content, True, k))
            if eot:
                segs.append(Segment(eot, True, k))
            if tail[len(eot):]:
                segs.append(Segment(tail[len(eot):], False, k))
            prev = full
        if dicts and (dicts[-1]["role"] != "assistant" or add_generation_prompt):
            final = self.render(dicts, add_generation_prompt)
            check_prefix(final, prev, len(dicts) - 1)
            if final[len(prev):]:
                segs.append(Segment(final[len(prev):], False, len(dicts)))
        return segs


def spec_from_tokenizer(tokenizer: Any) -> TemplateSpec:
    """The tokenizer's own chat template as a jinja spec (BOS policy read from its output)."""
    tmpl = getattr(tokenizer, "chat_template", None)
    if isinstance(tmpl, dict):
        tmpl = tmpl.get("default") or next(iter(tmpl.values()), None)
    if not tmpl:
        raise TemplateError("the tokenizer has no chat_template; pick a named template "
                            "(tulu, alpaca, chatml, llama2, llama3)", field="template")
    spec = TemplateSpec(name="tokenizer", kind="jinja", chat_template=tmpl, bos="never",
                        eos_token=tokenizer.eos_token or "</s>", bos_token=tokenizer.bos_token or "<s>",
                        description=f"chat template of {getattr(tokenizer, 'name_or_path', 'the tokenizer')}")
    probe = JinjaRenderer(spec, tokenizer).render(_PROBE, False)
    if tokenizer.bos_token and probe.startswith(tokenizer.bos_token):
        spec = TemplateSpec(**{**spec.__dict__, "bos": "always"})
    return spec
