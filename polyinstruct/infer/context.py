"""One context-length check for every place that sends a prompt to a model.

``polyinstruct serve`` (``/v1/chat/completions``, ``/v1/completions``) and the browser
chat and arena (``polyinstruct annotate serve``) refuse a prompt whose tokens plus the
requested new tokens exceed the model's context, before any model work starts: a
prompt past the context gives garbage or a crash, and processing it (one forward pass
that cannot be interrupted) would hold the model for everyone.
"""

from __future__ import annotations

from typing import Any

from polyinstruct.errors import ConfigError


class ContextLengthError(ConfigError):
    """The prompt plus ``max_tokens`` does not fit the model's context."""

    def __init__(self, message: str, *, field: str, prompt_tokens: int, context_length: int):
        super().__init__(message, field=field)
        self.prompt_tokens, self.context_length = prompt_tokens, context_length


def check_fits(prompt_tokens: int, max_new_tokens: int, context_length: int | None, *,
               field: str = "messages", what: str = "prompt") -> None:
    """Raise ``ContextLengthError`` when ``prompt_tokens + max_new_tokens`` exceeds ``context_length``
    (no check when the context is unknown)."""
    if context_length and prompt_tokens + max_new_tokens > context_length:
        raise ContextLengthError(f"{what} ({prompt_tokens} tokens) + max_tokens ({max_new_tokens}) exceeds the "
                                 f"model's context length of {context_length}", field=field,
                                 prompt_tokens=prompt_tokens, context_length=context_length)


def check_messages_fit(backend: Any, messages: list[dict[str, str]], max_new_tokens: int, *,
                       field: str = "messages") -> int | None:
    """Count the prompt tokens of ``messages`` with the backend's own template and check them
    against its context; returns the count, or None when the backend cannot count (a remote
    endpoint checks for itself). A template that refuses the messages raises ``ConfigError``."""
    encode = getattr(backend, "encode_messages", None)
    if encode is None:
        return None
    try:
        n = len(encode(messages))
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a chat template raising (e.g. no system role): the user's to fix
        raise ConfigError(f"the model's chat template refused these messages: {e}", field=field) from None
    check_fits(n, max_new_tokens, getattr(backend, "context_length", None), field=field)
    return n
