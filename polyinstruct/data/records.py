"""The canonical conversation record every stage exchanges.

A ``Conversation`` is a list of ``Message`` objects (role system|user|assistant,
content, optional per-message language, and for a user turn an optional
``input``: Alpaca's separate input text, kept apart so each template renders it
its own way, see docs/data.md) plus metadata. Every reader in
``polyinstruct.data.formats`` produces it; templates and inference consume it.
On disk it is one JSON object per line (see ``to_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")


@dataclass
class Message:
    role: str
    content: str
    language: str | None = None  # ISO 639-1; overrides Conversation.language
    input: str | None = None  # user turns only: Alpaca's "input" (context the instruction refers to)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.language:
            d["language"] = self.language
        if self.input:
            d["input"] = self.input
        return d

    @property
    def text(self) -> str:
        """The turn as chat templates show it: content, then the input after a blank line."""
        return f"{self.content}\n\n{self.input}" if self.input else self.content


@dataclass
class Conversation:
    id: str
    messages: list[Message]
    language: str | None = None  # ISO 639-1 code of the conversation (of the prompt if mixed)
    source: str | None = None  # dataset name
    tags: list[str] = field(default_factory=list)  # task tags, e.g. ["brainstorming"]
    license: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # anything else worth keeping

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "messages": [m.to_dict() for m in self.messages]}
        if self.language:
            d["language"] = self.language
        if self.source:
            d["source"] = self.source
        if self.tags:
            d["tags"] = list(self.tags)
        if self.license:
            d["license"] = self.license
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Conversation":
        """Build from the on-disk dict. Structural checks live in ``data.validate``."""
        msgs = [Message(m["role"], m["content"], m.get("language"), m.get("input") or None) for m in d["messages"]]
        return cls(
            id=str(d["id"]),
            messages=msgs,
            language=d.get("language"),
            source=d.get("source"),
            tags=list(d.get("tags") or []),
            license=d.get("license"),
            meta=dict(d.get("meta") or {}),
        )

    # Convenience views used by templates, stats and recipes.
    def message_language(self, i: int) -> str | None:
        return self.messages[i].language or self.language

    @property
    def prompt_messages(self) -> list[Message]:
        """All messages before the final assistant turn (what a model is asked)."""
        if self.messages and self.messages[-1].role == "assistant":
            return self.messages[:-1]
        return list(self.messages)

    @property
    def response_language(self) -> str | None:
        """Language of the final assistant turn (differs from ``language`` for cross-lingual data)."""
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i].role == "assistant":
                return self.message_language(i)
        return self.language


@dataclass
class Preference:
    """A preference record: a conversation ``prefix`` (ending with a user turn), then a ``chosen`` and a
    ``rejected`` assistant turn, each with its language.

    Paired records (both turns) train DPO, IPO, ORPO, SimPO; an *unpaired* record holds only one of them
    (``chosen``: a desirable answer, ``rejected``: an undesirable one), which is the shape KTO takes.
    On disk it is one JSON object per line: ``{"id", "messages": [prefix], "chosen": {"content",
    "language"}, "rejected": {...}, "language", "source", "meta"}`` (``meta.reasons`` says why a built
    pair was chosen so; see docs/preference.md). Checks live in ``data.preference``.
    """

    id: str
    prefix: list[Message]
    chosen: Message | None
    rejected: Message | None
    language: str | None = None  # the prompt's language
    source: str | None = None
    license: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def paired(self) -> bool:
        return self.chosen is not None and self.rejected is not None

    def conversation(self, which: str) -> Conversation:
        """The prefix followed by the ``chosen`` or ``rejected`` turn, as an SFT conversation (what
        templates tokenize and mask)."""
        turn = self.chosen if which == "chosen" else self.rejected
        if turn is None:
            raise ValueError(f"record {self.id!r} has no {which} turn")
        return Conversation(id=self.id, messages=[*self.prefix, turn], language=self.language, source=self.source)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "messages": [m.to_dict() for m in self.prefix]}
        for key in ("chosen", "rejected"):
            turn = getattr(self, key)
            if turn is not None:
                t = {"content": turn.content}
                if turn.language:
                    t["language"] = turn.language
                d[key] = t
        for key in ("language", "source", "license"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preference":
        """Build from the on-disk dict (checked first by ``data.preference.check_preference``)."""
        prefix = [Message(m["role"], m["content"], m.get("language"), m.get("input") or None) for m in d["messages"]]

        def turn(key: str) -> Message | None:
            t = d.get(key)
            return None if t is None else Message("assistant", t["content"], t.get("language"))

        return cls(id=str(d["id"]), prefix=prefix, chosen=turn("chosen"), rejected=turn("rejected"),
                   language=d.get("language"), source=d.get("source"), license=d.get("license"),
                   meta=dict(d.get("meta") or {}))
