"""Request bodies of the OpenAI-compatible server, validated by pydantic.

Fields we cannot honour (``n`` > 1, non-zero frequency/presence penalties, ``suffix``,
tools, response_format, streaming with logprobs, ...) are rejected with a 400 that says
so, rather than silently ignored; fields outside the schema are kept in ``model_extra``
and checked by the server (``serve.check_options``). ``/v1/completions`` takes ``echo``,
``logprobs`` (0..20) and prompts as token ids (a list of ints, or a list of such lists),
``max_tokens=0`` with ``echo``; chat takes ``logprobs``/``top_logprobs``, as vLLM and the
OpenAI API define them (``polyinstruct.infer.logprobs``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @field_validator("role")
    @classmethod
    def _developer_is_system(cls, v: str) -> str:
        return "system" if v == "developer" else v  # OpenAI's newer name for system, as the data readers read it

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what torch.manual_seed accepts


class SamplingFields(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    # Extensions read by vLLM-style servers (sent via the openai client's extra_body).
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    no_repeat_ngram_size: int | None = Field(default=None, ge=0)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 16:
            raise ValueError("at most 16 stop strings")
        if any(not s for s in stops):
            raise ValueError("stop strings must be non-empty")
        return stops

    @model_validator(mode="after")
    def _unsupported(self):
        if self.n != 1:
            raise ValueError("only n=1 is supported")
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name):
                raise ValueError(f"{name} is not supported; use repetition_penalty")
        return self


MAX_LOGPROBS = 20  # as vLLM's default max_logprobs


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)

    @model_validator(mode="after")
    def _last_turn(self):
        if self.messages[-1].role == "assistant":
            raise ValueError("the last message must be from the user or system, not the assistant")
        if self.logprobs and self.stream:
            raise ValueError("logprobs are not supported with stream: true")
        return self


class CompletionRequest(SamplingFields):
    # text prompts: list[str]; token-id prompts: list[list[int]] (normalised by _prompt)
    prompt: list[str] | list[list[int]]
    max_tokens: int | None = Field(default=None, ge=0)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    suffix: str | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [v]
        if isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return [v]  # one prompt as token ids
        if isinstance(v, list) and not v:
            raise ValueError("prompt must not be empty")
        if isinstance(v, list) and any(isinstance(x, list) and not x for x in v):
            raise ValueError("a token-id prompt must not be empty")
        return v

    @property
    def token_ids(self) -> bool:
        return bool(self.prompt) and isinstance(self.prompt[0], list)

    @model_validator(mode="after")
    def _unsupported_completion(self):
        if self.suffix is not None:
            raise ValueError("suffix is not supported")
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens=0 needs echo: true (it returns the prompt, scored when logprobs is set)")
        if self.stream and (self.echo or self.logprobs is not None or self.token_ids):
            raise ValueError("echo, logprobs and token-id prompts are not supported with stream: true")
        if self.stream and len(self.prompt) > 1:
            raise ValueError("streaming supports a single prompt")
        return self


class TokenizeRequest(BaseModel):
    """vLLM's /tokenize: a text prompt, or chat messages rendered with the model's template."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True

    @model_validator(mode="after")
    def _one(self):
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt or messages")
        return self


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    tokens: list[int]
