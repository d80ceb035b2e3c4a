"""Split a message into what a translator may see and what it must never touch.

A message becomes a list of *segments*: fenced code blocks, blank lines and the
markdown prefix of each line (heading ``#``, list bullet or number, block quote
``>``, table pipes, indentation) are kept verbatim; the rest of each line is a
*unit* to translate. Inside a unit, inline code, URLs, e-mail addresses,
template placeholders (``{name}``, ``{{x}}``, ``%s``, ``$VAR``, ``<tag>``) are
replaced by numbered tags ``<x1/>``, ``<x2/>``... that the engine is asked to
keep; ``restore`` puts the originals back and reports tags the engine lost or
duplicated. Numbers stay in the text (a translation needs them for grammar) and
are checked afterwards: the digit runs of the translation must equal the
source's (``digit_runs``), so ``3.5`` -> ``3,5`` passes and ``12`` -> ``13`` does not.

See docs/translation.md.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})")
# Markdown line prefix: indentation, block quotes, a bullet / numbered item / heading / table pipe.
_PREFIX = re.compile(r"^(\s*(?:>\s*)*(?:#{1,6}\s+|[-*+]\s+(?:\[[ xX]\]\s+)?|\d{1,3}[.)]\s+|\|\s*)?)")
_PROTECT = re.compile(
    r"`[^`\n]+`"                                  # inline code
    r"|https?://[^\s<>()\"']+[^\s<>()\"'.,;:!?]"  # URLs (trailing punctuation stays text)
    r"|www\.[^\s<>()\"']+[^\s<>()\"'.,;:!?]"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"              # e-mail addresses
    r"|\{\{[^{}\n]*\}\}|\{[A-Za-z_][\w.]*\}"      # {{jinja}} / {placeholder}
    r"|%(?:\([\w]+\))?[sdifr]"                    # printf placeholders
    r"|\$\{?[A-Z_][A-Z0-9_]*\}?"                  # $VAR / ${VAR}
    r"|</?[A-Za-z][\w-]*(?:\s[^<>\n]*)?/?>"       # HTML/XML tags
)
# What engines write back for <xN/>: tolerant of spaces and a dropped slash.
_TAG = re.compile(r"<\s*x\s*(\d+)\s*/?\s*>")
_LETTER = re.compile(r"[^\W\d_]")
_DIGITS = re.compile(r"\d+")


def tag(n: int) -> str:
    return f"<x{n}/>"


@dataclass
class Unit:
    """One translatable piece: ``text`` holds ``<xN/>`` tags standing for ``spans[N-1]``."""

    text: str
    spans: list[str] = field(default_factory=list)


@dataclass
class Segmented:
    """A message as kept pieces (``str``) and units to translate (``int`` index into ``units``)."""

    parts: list[str | int]
    units: list[Unit]


def _mask(text: str) -> Unit:
    spans: list[str] = []

    def sub(m: re.Match) -> str:
        spans.append(m.group(0))
        return tag(len(spans))

    return Unit(_PROTECT.sub(sub, text), spans)


def needs_translation(text: str) -> bool:
    """A unit with no letters outside its tags (numbers, punctuation, code) is kept as is."""
    return bool(_LETTER.search(_TAG.sub(" ", text)))


def segment(content: str) -> Segmented:
    """Split a message (see module doc). ``join(seg, [u.text for u in seg.units])`` restores masked text."""
    parts: list[str | int] = []
    units: list[Unit] = []
    lines = content.split("\n")
    in_fence: str | None = None
    for i, line in enumerate(lines):
        nl = "\n" if i < len(lines) - 1 else ""
        m = _FENCE.match(line)
        if in_fence is not None:
            parts.append(line + nl)
            if m and m.group(2)[0] == in_fence[0] and len(m.group(2)) >= len(in_fence):
                in_fence = None
            continue
        if m:
            in_fence = m.group(2)
            parts.append(line + nl)
            continue
        if line.startswith(("    ", "\t")) and not line.strip().startswith(("-", "*", "+", ">")) \
                and (not parts or _prev_blank_or_code(lines, i)):
            parts.append(line + nl)  # indented code block
            continue
        prefix = _PREFIX.match(line).group(1)
        body = line[len(prefix):]
        stripped = body.rstrip()
        trail = body[len(stripped):]
        # A table row: translate each cell; a separator row (|---|:--:|) is structure.
        if prefix.lstrip().startswith("|") and "|" in stripped:
            parts.append(prefix)
            cells = stripped.split("|")
            for j, cell in enumerate(cells):
                _add_text(cell, parts, units)
                if j < len(cells) - 1:
                    parts.append("|")
            parts.append(trail + nl)
            continue
        parts.append(prefix)
        _add_text(stripped, parts, units)
        parts.append(trail + nl)
    return Segmented([p for p in parts if p != ""], units)


def _prev_blank_or_code(lines: list[str], i: int) -> bool:
    """Indented code needs a blank line (or more indented code) before it, as in CommonMark."""
    j = i - 1
    while j >= 0 and lines[j].startswith(("    ", "\t")):
        j -= 1
    return j < 0 or not lines[j].strip()


def _add_text(text: str, parts: list[str | int], units: list[Unit]) -> None:
    lead = text[:len(text) - len(text.lstrip())]
    core = text.strip()
    tail = text[len(lead) + len(core):]
    if not core:
        parts.append(text)
        return
    unit = _mask(core)
    if not needs_translation(unit.text):
        parts.append(text)
        return
    parts.append(lead)
    parts.append(len(units))
    units.append(unit)
    parts.append(tail)


class SpanError(ValueError):
    """A translation lost, duplicated or invented a protected tag."""


def restore(unit: Unit, translated: str) -> str:
    """Put the protected spans back into ``translated``; raise ``SpanError`` naming what went wrong."""
    found = Counter(int(m.group(1)) for m in _TAG.finditer(translated))
    want = Counter(range(1, len(unit.spans) + 1))
    if found != want:
        lost = sorted(want - found)
        extra = sorted(found - want)
        bits = []
        if lost:
            bits.append("lost " + ", ".join(repr(unit.spans[n - 1]) for n in lost))
        if extra:
            bits.append("invented or repeated " + ", ".join(tag(n) for n in extra))
        raise SpanError("; ".join(bits))
    return _TAG.sub(lambda m: unit.spans[int(m.group(1)) - 1], translated)


def join(seg: Segmented, texts: list[str]) -> str:
    """Reassemble a message from its kept parts and one (restored) text per unit."""
    return "".join(texts[p] if isinstance(p, int) else p for p in seg.parts)


def strip_protected(text: str) -> str:
    """The text without code blocks and protected spans (what number and copy checks compare)."""
    seg = segment(text)
    return " ".join(_PROTECT.sub(" ", p) for p in (u.text for u in seg.units))


def digit_runs(text: str) -> Counter:
    """Multiset of digit runs outside code and protected spans (separators are locale: ignored)."""
    return Counter(_DIGITS.findall(_TAG.sub(" ", strip_protected(text))))
