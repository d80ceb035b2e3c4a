"""Counting text length, in tokenizer tokens when a tokenizer is given, else in words.

"Words" are those of ``polyinstruct.lang.scripts.count_words``: whitespace-separated
runs, except that each character of a script written without spaces (Chinese, Japanese
kana, Thai, Lao, Khmer, Myanmar) counts as one word; Korean is written with spaces and
counts by them. Budgets, stats, chunking, length filters and tokenizer fertility all
count through here, so they agree with each other.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from polyinstruct.data.records import Conversation
from polyinstruct.lang.scripts import count_words


class TokenCounter(Protocol):
    unit: str

    def __call__(self, text: str) -> int: ...


class WordCounter:
    """Words (``lang.scripts.count_words``). The default when no tokenizer is given."""

    unit = "words"

    def __call__(self, text: str) -> int:
        return count_words(text)


class TokenizerCounter:
    """Tokens of a Hugging Face tokenizer, without special tokens."""

    unit = "tokens"

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def make_counter(tokenizer: Any = None) -> TokenCounter:
    """``None`` -> words; a path or name -> ``AutoTokenizer``; a tokenizer object or callable -> as is."""
    if tokenizer is None:
        return WordCounter()
    if isinstance(tokenizer, str) or hasattr(tokenizer, "__fspath__"):
        from transformers import AutoTokenizer

        return TokenizerCounter(AutoTokenizer.from_pretrained(str(tokenizer)))
    if hasattr(tokenizer, "unit") and callable(tokenizer):  # already a counter
        return tokenizer
    if hasattr(tokenizer, "encode"):  # a Hugging Face tokenizer
        return TokenizerCounter(tokenizer)
    if callable(tokenizer):  # a plain text -> int function
        return _Wrapped(tokenizer)
    raise TypeError(f"cannot count tokens with {type(tokenizer).__name__}")


class _Wrapped:
    unit = "tokens"

    def __init__(self, fn: Callable[[str], int]):
        self.fn = fn

    def __call__(self, text: str) -> int:
        return int(self.fn(text))


def conversation_tokens(conv: Conversation, counter: TokenCounter) -> int:
    """Length of all message contents (no template), the budget unit of recipes and mixtures."""
    return sum(counter(m.text) for m in conv.messages)
