"""Plain functions behind the ``template`` and ``tokenize`` commands (callable from Python too)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from polyinstruct.data.records import Conversation
from polyinstruct.errors import ConfigError, DataError
from polyinstruct.fileio import iter_jsonl_numbered
from polyinstruct.templates.dataset import TokenizeReport, tokenize_dataset
from polyinstruct.templates.library import load_template

EXAMPLE = [{"role": "system", "content": "You are a helpful assistant."},
           {"role": "user", "content": "Why is the sky blue?"}]


def _tokenizer(path: str | None):
    if path is None:
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load tokenizer: {e}", field="tokenizer", file=path) from None


def show_template(name: str, *, tokenizer: str | None = None, messages: list[dict] | None = None,
                  language: str | None = None, cot: bool = False, save_to: str | None = None) -> dict[str, Any]:
    """Render a prompt with a template (and optionally save the template YAML); returns what was shown."""
    t = load_template(name, _tokenizer(tokenizer), language=language, cot=cot)
    out = {"name": t.name, "prompt": t.render_prompt(messages or EXAMPLE), "stop_strings": t.stop_strings}
    if save_to:
        out["saved"] = str(t.save(save_to))
    return out


def read_conversations(path: str | os.PathLike) -> list[Conversation]:
    """Conversations from a JSONL file; a bad line is a DataError naming file and line."""
    convs: list[Conversation] = []
    try:
        for n, d in iter_jsonl_numbered(path, complete_only=False):
            try:
                convs.append(Conversation.from_dict(d))
            except (KeyError, TypeError) as e:
                raise DataError(f"not a conversation record (missing or bad {e})", path=str(path), line=n,
                                field="messages") from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror}", path=str(path)) from None
    return convs


def tokenize_file(data: str, tokenizer: str, template: str, *, output_dir: str | None = None,
                  cache_dir: str | None = None, max_length: int | None = None, train_on: str = "all",
                  truncation: str = "turn", num_proc: int = 1, language: str | None = None,
                  progress: bool = False) -> TokenizeReport:
    """Tokenize a conversation JSONL with labels; save the Arrow dataset (+ template.yaml) to output_dir."""
    tok = _tokenizer(tokenizer)
    t = load_template(template, tok, language=language)
    ds, report = tokenize_dataset(read_conversations(data), tok, t, max_length=max_length, train_on=train_on,
                                  truncation=truncation, cache_dir=cache_dir, num_proc=num_proc, progress=progress)
    if output_dir:
        out = Path(output_dir)
        ds.save_to_disk(str(out / "data"))
        t.save(out / "template.yaml")
        from polyinstruct.fileio import write_json

        write_json(out / "report.json", report.to_dict())
    return report
