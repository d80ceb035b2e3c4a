"""Chat templates, tokenization with assistant-only labels, packing and collators.

Public API (other stages rely on these names):

- ``load_template(name_or_path, tokenizer=None, *, language=None, cot=False) -> ChatTemplate``
- ``ChatTemplate``: ``name``, ``render_prompt(messages)``, ``encode_prompt(messages, tokenizer)``,
  ``stop_strings``, ``save(path)``, ``segments(messages)``
- ``polyinstruct.templates.tokenize.tokenize_conversation`` / ``tokenize_dataset``
- ``polyinstruct.templates.collate``: ``PaddedCollator``, ``PackedCollator``,
  ``pack_best_fit_decreasing``, ``length_grouped_batches``
"""

from __future__ import annotations

from polyinstruct.templates.library import builtin_names, load_template
from polyinstruct.templates.render import ChatTemplate, Segment
from polyinstruct.templates.spec import TemplateError, TemplateSpec

__all__ = ["ChatTemplate", "Segment", "TemplateError", "TemplateSpec", "builtin_names", "load_template",
           "tokenize_conversation", "tokenize_dataset"]


def __getattr__(name: str):  # lazy: datasets/torch are heavy and not needed to render prompts
    if name in ("tokenize_conversation", "tokenize_dataset"):
        from polyinstruct.templates import dataset, tokenize

        return {"tokenize_conversation": tokenize.tokenize_conversation,
                "tokenize_dataset": dataset.tokenize_dataset}[name]
    raise AttributeError(name)
