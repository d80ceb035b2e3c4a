"""The one generation interface every consumer (predict, chat, serve, judges) uses.

Backends (``hf``, ``vllm``, ``openai_http``) implement ``GenerationBackend``.
Inputs are lists of chat messages (``[{"role", "content"}]``); the backend owns
prompt rendering (a run directory's template for local models, the server's for
HTTP endpoints), so a model is always prompted the way it was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Protocol, runtime_checkable


@dataclass
class DecodingParams:
    """Sampling settings; ``greedy`` is the default (Tulu evaluation)."""

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Named presets (studies 2 and 3, docs/studies.md).
DECODING_PRESETS: dict[str, DecodingParams] = {
    "greedy": DecodingParams(),
    # Alpaca-CoT's generate/predict defaults.
    "alpaca_cot": DecodingParams(do_sample=True, temperature=1.0, top_p=0.9,
                                 no_repeat_ngram_size=6, repetition_penalty=1.8),
    # Tulu evaluation: greedy, 512 new tokens.
    "tulu_eval": DecodingParams(max_new_tokens=512, do_sample=False),
}


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length"


@runtime_checkable
class GenerationBackend(Protocol):
    """Generate one assistant reply per conversation."""

    name: str

    def generate(self, conversations: list[list[dict[str, str]]], params: DecodingParams) -> list[Generation]:
        ...

    def stream(self, conversation: list[dict[str, str]], params: DecodingParams) -> Iterator[str]:
        """Yield text pieces of one reply as they are produced."""
        ...
