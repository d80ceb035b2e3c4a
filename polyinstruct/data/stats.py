"""Dataset statistics: the columns of Tulu's Table 1, overall and per language.

``instances``, ``mean_rounds`` (assistant turns per conversation),
``mean_prompt_length`` and ``mean_completion_length`` (per turn: the mean
length of a user turn and of an assistant turn, in tokenizer tokens when a
tokenizer is given, else words), plus ``languages`` (instances per language).
Per-language rows group by the conversation's language (the prompt's).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

from polyinstruct.data.records import Conversation
from polyinstruct.lang.scripts import count_chars, count_words
from polyinstruct.data.tokens import make_counter

COLUMNS = ("instances", "mean_rounds", "mean_prompt_length", "mean_completion_length")


class _Acc:
    __slots__ = ("n", "rounds", "prompt_tokens", "prompt_turns", "completion_tokens", "completion_turns")

    def __init__(self) -> None:
        self.n = self.rounds = self.prompt_tokens = self.prompt_turns = 0
        self.completion_tokens = self.completion_turns = 0

    def row(self) -> dict[str, Any]:
        return {"instances": self.n,
                "mean_rounds": round(self.rounds / self.n, 2) if self.n else 0.0,
                "mean_prompt_length": round(self.prompt_tokens / self.prompt_turns, 1) if self.prompt_turns else 0.0,
                "mean_completion_length": round(self.completion_tokens / self.completion_turns, 1)
                if self.completion_turns else 0.0}


def dataset_stats(records: Iterable[Conversation], tokenizer: Any = None) -> dict[str, Any]:
    """Stream ``records`` once; returns ``{unit, overall: {...}, per_language: {lang: {...}}, languages}``."""
    count = make_counter(tokenizer)
    overall, per_lang = _Acc(), defaultdict(_Acc)
    langs: Counter[str] = Counter()
    fert: dict[str, list[int]] | None = {} if count.unit == "tokens" else None
    for conv in records:
        lang = conv.language or "unknown"
        langs[lang] += 1
        accs = (overall, per_lang[lang])
        rounds = pt = pn = ct = cn = 0
        for m in conv.messages:
            if m.role == "assistant":
                rounds += 1
                ct += (n_tok := count(m.text))
                cn += 1
            elif m.role == "user":
                pt += (n_tok := count(m.text))
                pn += 1
            else:
                continue
            if fert is not None:  # tokenizer fertility (analysis/fertility.py): tokens per word and per char
                f = fert.setdefault(lang, [0, 0, 0])
                f[0] += n_tok
                f[1] += count_words(m.text)
                f[2] += count_chars(m.text)
        for a in accs:
            a.n += 1
            a.rounds += rounds
            a.prompt_tokens += pt
            a.prompt_turns += pn
            a.completion_tokens += ct
            a.completion_turns += cn
    per_language = {k: per_lang[k].row() for k in sorted(per_lang)}
    for k, (tokens, words, chars) in (fert or {}).items():
        per_language[k]["tokens_per_word"] = round(tokens / words, 3) if words else None
        per_language[k]["tokens_per_char"] = round(tokens / chars, 3) if chars else None
    return {"unit": count.unit, "overall": overall.row(), "per_language": per_language,
            "languages": dict(langs.most_common())}


def format_stats(stats: dict[str, Any], name: str = "") -> str:
    """A plain-text table: one row per language, then the total."""
    unit = stats["unit"]
    head = ["language", "#instances", "mean rounds", f"mean prompt ({unit})", f"mean completion ({unit})"]
    rows = [[lang, str(r["instances"]), f"{r['mean_rounds']:.2f}", f"{r['mean_prompt_length']:.1f}",
             f"{r['mean_completion_length']:.1f}"] for lang, r in stats["per_language"].items()]
    o = stats["overall"]
    rows.append(["all", str(o["instances"]), f"{o['mean_rounds']:.2f}", f"{o['mean_prompt_length']:.1f}",
                 f"{o['mean_completion_length']:.1f}"])
    if any("tokens_per_word" in r for r in stats["per_language"].values()):  # fertility columns
        head += ["tokens/word", "tokens/char"]
        for row, r in zip(rows, list(stats["per_language"].values()) + [{}]):
            row += [str(r.get("tokens_per_word", "")), str(r.get("tokens_per_char", ""))]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = ([name] if name else []) + [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    return "\n".join(lines)
