"""Interactive terminal chat with history and streaming output.

Commands: ``/reset`` (forget the history), ``/system TEXT`` (set the system prompt
and reset; ``/system`` alone clears it), ``/help``, ``/quit`` (or Ctrl-D). Input and
output are parameters so the loop can be driven by tests or other front ends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from polyinstruct.infer.backend import DecodingParams, GenerationBackend

HELP = "/reset  forget the conversation\n/system TEXT  set the system prompt (and reset)\n/quit  leave"


class ChatSession:
    """The history a chat keeps; one ``reply`` per user turn."""

    def __init__(self, backend: GenerationBackend, params: DecodingParams, system: str | None = None):
        self.backend, self.params, self.system = backend, params, system
        self.history: list[dict[str, str]] = []

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def reset(self) -> None:
        self.history = []

    def reply(self, user_text: str, on_piece: Callable[[str], None] | None = None) -> str:
        """Stream the assistant's answer to ``user_text`` and add both turns to the history."""
        self.history.append({"role": "user", "content": user_text})
        pieces: list[str] = []
        try:
            for piece in self.backend.stream(self.messages(), self.params):
                pieces.append(piece)
                if on_piece is not None:
                    on_piece(piece)
        except BaseException:
            self.history.pop()  # an interrupted turn is not part of the conversation
            raise
        text = "".join(pieces)
        self.history.append({"role": "assistant", "content": text})
        return text


def chat(backend: GenerationBackend, params: DecodingParams, *, system: str | None = None,
         input_fn: Callable[[str], str] = input, out: TextIO = sys.stdout) -> ChatSession:
    """Run the read-reply loop until /quit or end of input; returns the session."""
    session = ChatSession(backend, params, system)
    out.write(f"chatting with {getattr(backend, 'model_name', backend.name)} - /help for commands\n")
    while True:
        try:
            line = input_fn(">>> ")
        except EOFError:
            out.write("\n")
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text == "/help":
            out.write(HELP + "\n")
            continue
        if text == "/reset":
            session.reset()
            out.write("(history cleared)\n")
            continue
        if text == "/system" or text.startswith("/system "):
            session.system = text[len("/system"):].strip() or None
            session.reset()
            out.write(f"(system prompt {'set' if session.system else 'cleared'}; history cleared)\n")
            continue
        if text.startswith("/"):
            out.write(f"unknown command {text.split()[0]!r}\n{HELP}\n")
            continue
        try:
            session.reply(line, on_piece=lambda p: (out.write(p), out.flush()))
        except KeyboardInterrupt:
            out.write("\n(interrupted)\n")
            continue
        out.write("\n")
    return session
