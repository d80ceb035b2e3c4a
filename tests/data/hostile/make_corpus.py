"""Writes the small hostile-input files of this folder and ``cases.json`` (what each must give).

Run ``python tests/data/hostile/make_corpus.py`` to regenerate; the giant cases
(JSON nested 200,000 deep, a CSV cell over 131,072 characters, a corrupt
Parquet page) are built at test time by ``giant_cases`` instead of committed.
Each case: ``file``, ``rows`` (rows in the file), ``valid`` (records out),
``rejects`` (reason -> count) and, for OASST message tables, ``unselected``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=True)  # keeps lone surrogates as \\udXXXX escapes


def _msgs(u: str = "Hi", a: str = "Hello") -> list[dict[str, Any]]:
    return [{"role": "user", "content": u}, {"role": "assistant", "content": a}]


def _oasst(mid, parent, role, text, tree="t1", rank=None):
    row = {"message_id": mid, "parent_id": parent, "message_tree_id": tree, "role": role, "text": text,
           "lang": "en"}
    if rank is not None:
        row["rank"] = rank
    return row


CASES: list[dict[str, Any]] = []


def case(name: str, text: str, rows: int, valid: int, rejects: dict[str, int], **extra: Any) -> None:
    (HERE / name).write_text(text, encoding="utf-8", newline="")
    CASES.append({"file": name, "rows": rows, "valid": valid, "rejects": rejects, **extra})


def build() -> list[dict[str, Any]]:
    CASES.clear()
    case("role_list.jsonl", "\n".join([
        _line({"messages": _msgs()}),
        _line({"messages": [{"role": ["user"], "content": "Hi"}, {"role": "assistant", "content": "x"}]}),
        _line({"messages": [{"role": {"r": 1}, "content": "Hi"}, {"role": "assistant", "content": "x"}]}),
        _line({"messages": _msgs("Again", "Yes")})]) + "\n", 4, 2, {"bad-type": 2})
    case("sharegpt_from_list.jsonl", "\n".join([
        _line({"conversations": [{"from": ["human"], "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}),
        _line({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]})]) + "\n",
         2, 1, {"bad-type": 1})
    case("oasst_replies_not_list.jsonl", "\n".join([
        _line({"message_tree_id": "t1", "prompt": {"message_id": "m1", "role": "prompter", "text": "Hi",
                                                     "replies": "oops"}}),
        _line({"message_tree_id": "t2", "prompt": {"message_id": "n1", "role": "prompter", "text": "Hi",
                                                     "replies": [1, 2]}}),
        _line({"message_tree_id": "t3", "prompt": {"message_id": "k1", "role": "prompter", "text": "Hi", "replies": [
            {"message_id": "k2", "role": "assistant", "text": "Hello", "rank": 0}]}})]) + "\n",
         3, 1, {"bad-type": 2}, format="oasst1")
    flat = [
        _oasst("a0", None, "prompter", "Hi"),                      # 1 root
        _oasst("a1", "a0", "assistant", "Hello", rank=0),          # 2 on the top path
        _oasst("a2", "a0", "assistant", "Hey", rank=1),            # 3 unselected (lower rank)
        _oasst("a3", "a1", "prompter", "How are you?"),            # 4 on the top path
        _oasst("a4", "a3", "assistant", "Fine, thanks.", rank=0),  # 5 on the top path
        _oasst("a1", "a0", "assistant", "Duplicate", rank=2),      # 6 duplicate message_id
        _oasst("o1", "zz", "assistant", "Orphan"),                 # 7 parent not in the tree
        _oasst("o2", "o1", "prompter", "Orphan's child"),          # 8 descends from an orphan
        _oasst("s1", "s1", "assistant", "Self"),                   # 9 its own parent
        _oasst("c1", "c2", "prompter", "Cycle A"),                 # 10 cycle
        _oasst("c2", "c1", "assistant", "Cycle B"),                # 11 cycle
        _oasst("r2", None, "prompter", "Second root"),             # 12 extra root
        _oasst("r3", "r2", "assistant", "Under second root"),      # 13 descends from a rejected root
        _oasst("b1", "a0", "robot", "Bad role"),                   # 14 unknown role
        _oasst("b2", "b1", "prompter", "Under bad role"),          # 15 descends from a rejected message
        _oasst("p0", None, "prompter", "Lonely", tree="t2"),       # 16 tree without any answer
        _oasst("p1", "p0", "prompter", "Still lonely", tree="t2"),  # 17
        _oasst("q0", None, "prompter", "Question", tree="t3"),     # 18 root
        _oasst("q1", "q0", "assistant", "Best", tree="t3", rank=0),  # 19 on the top path
        _oasst("q2", "q0", "assistant", "Second", tree="t3", rank=1),  # 20 unselected
    ]
    case("oasst_flat_broken.jsonl", "\n".join(_line(r) for r in flat) + "\n", 20, 2,
         {"duplicate-message-id": 1, "orphan": 4, "self-parent": 1, "cycle": 2, "extra-root": 1,
          "unknown-role": 1, "no-final-assistant": 2}, format="oasst1", unselected=2)
    case("surrogate.jsonl", "\n".join([
        '{"instruction": "a\\ud800b", "output": "x"}', _line({"instruction": "ok", "output": "fine"})]) + "\n",
         2, 1, {"malformed-json": 1})
    case("surrogate.json", "[" + ",\n".join([
        '{"instruction": "a\\ud800b", "output": "x"}', '{"instruction": "ok", "output": "y\\udfff"}',
        _line({"instruction": "fine", "output": "fine"})]) + "]\n", 3, 1, {"lone-surrogate": 2})
    case("nonstring_metadata.jsonl", "\n".join([
        _line({"instruction": "a", "output": "b", "source": 5}),
        _line({"instruction": "a", "output": "b", "license": ["MIT"]}),
        _line({"instruction": "a", "output": "b", "tags": [1, None]}),
        _line({"instruction": "a", "output": "b", "system": 5}),
        _line({"instruction": "a", "output": "b", "id": [1]}),
        _line({"instruction": "a", "output": "b", "language": "../../x"}),
        _line({"instruction": "a", "output": "b", "meta": "not json"}),
        _line({"instruction": "a", "output": "b", "source": "ok", "license": "MIT", "tags": ["t"]})]) + "\n",
         8, 1, {"bad-type": 6, "bad-language": 1})
    case("duplicate_ids.jsonl", "\n".join([
        _line({"id": 1, "instruction": "a", "output": "b"}), _line({"id": "1", "instruction": "c", "output": "d"}),
        _line({"id": 2, "instruction": "e", "output": "f"}), _line({"id": "2", "instruction": "g", "output": "h"}),
        _line({"instruction": "no id", "output": "i"})]) + "\n", 5, 3, {"duplicate-id": 2})
    case("one_line_array.json", json.dumps([{"instruction": f"q{i}", "output": "a"} for i in range(5)]) + "\n",
         5, 5, {})
    case("nan.jsonl", '{"instruction": "a", "output": "b", "meta": {"score": NaN}}\n'
         + _line({"instruction": "a", "output": "b"}) + "\n", 2, 1, {"malformed-json": 1})
    case("nan.json", '[{"instruction": "a", "output": "b", "meta": {"score": NaN}},\n'
         '{"instruction": "a", "output": "b", "meta": {"score": Infinity}},\n'
         + _line({"instruction": "a", "output": "b", "meta": {"score": 1.5}}) + "]\n", 3, 1, {"bad-number": 2})
    case("json_lookalike_cells.csv", 'prompt,completion\n"[1, 2]","{""a"": 1}"\n"{not json","[x]"\n', 2, 2, {},
         exact={"2": ["[1, 2]", '{"a": 1}'], "3": ["{not json", "[x]"]})  # by CSV line
    case("same_role_turns.jsonl", "\n".join([
        _line({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                            {"role": "assistant", "content": "c"}]}),
        _line({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                            {"role": "assistant", "content": "c"}]}),
        _line({"messages": _msgs()})]) + "\n", 3, 1, {"consecutive-turns": 2})
    case("broken_lines.jsonl", "\n".join([
        '{"instruction": "a", "output": ', '[1, 2]', '"just a string"', _line({"instruction": "", "output": "b"}),
        _line({"instruction": "a", "output": "  "}), _line({"instruction": "a"}),
        _line({"instruction": "fine", "output": "fine"})]) + "\n", 7, 1,
         {"malformed-json": 3, "empty-user-turn": 1, "empty-assistant-turn": 1, "missing-field": 1})
    case("csv_extra_cells.csv", "instruction,output\na,b,c\nfine,fine\n", 2, 1, {"malformed-csv": 1})
    case("history_not_list.jsonl", "\n".join([
        _line({"instruction": "a", "output": "b", "history": "oops"}),
        _line({"instruction": "a", "output": "b", "history": [["q", 1]]}),
        _line({"instruction": "a", "output": "b", "history": [["q", "r"]]})]) + "\n", 3, 1, {"bad-type": 2})
    case("big_integers.jsonl", "\n".join([
        '{"instruction": "a", "output": "b", "meta": {"n": 123456789012345678901234567890}}',
        '{"instruction": "a", "output": "b", "meta": {"n": -18446744073709551617, "x": "12345678901234567890"}}'])
         + "\n", 2, 2, {}, exact_meta=[{"n": 123456789012345678901234567890},
                                      {"n": -18446744073709551617, "x": "12345678901234567890"}])
    (HERE / "latin1.csv").write_bytes(b"instruction,output\nok,fine\ncaf\xe9 au lait,x\nmore,rows\n")
    CASES.append({"file": "latin1.csv", "rows": 3, "valid": 2, "rejects": {"invalid-utf8": 1}})
    (HERE / "not_parquet.parquet").write_bytes(b"PAR1 this is not a Parquet file")
    CASES.append({"file": "not_parquet.parquet", "rows": 1, "valid": 0, "rejects": {"malformed-parquet": 1}})
    (HERE / "cases.json").write_text(json.dumps(CASES, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return CASES


def giant_cases(folder: Path) -> list[dict[str, Any]]:
    """Big hostile files, written into ``folder`` at test time (too large to commit)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = []
    deep = "[" * 200_000 + "]" * 200_000
    good = _line({"instruction": "fine", "output": "fine"})
    (folder / "deep.jsonl").write_text(f"{good}\n{deep}\n{good}\n", encoding="utf-8")
    out.append({"file": "deep.jsonl", "rows": 3, "valid": 2, "rejects": {"too-deep": 1}})
    deep_obj = '{"a":' * 200_000 + "1" + "}" * 200_000
    (folder / "deep.json").write_text(f'[{good},\n{deep_obj},\n{good}]', encoding="utf-8")
    out.append({"file": "deep.json", "rows": 3, "valid": 2, "rejects": {"too-deep": 1}})
    (folder / "deep_single.json").write_text(deep_obj, encoding="utf-8")
    out.append({"file": "deep_single.json", "rows": 1, "valid": 0, "rejects": {"too-deep": 1}})
    big = "x" * 140_000
    (folder / "big_cell.csv").write_text(f"instruction,output\n{big},b\nfine,fine\n", encoding="utf-8")
    out.append({"file": "big_cell.csv", "rows": 2, "valid": 2, "rejects": {}, "big": len(big)})
    rows = [{"instruction": f"q{i} " + "w" * 40, "output": "a" * 80} for i in range(300)]
    pq.write_table(pa.Table.from_pylist(rows), folder / "good.parquet", row_group_size=100, compression="none")
    data = bytearray((folder / "good.parquet").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 200] = b"\xab" * 200  # garbage inside the second row group's pages
    (folder / "corrupt.parquet").write_bytes(bytes(data))
    (folder / "good.parquet").unlink()
    out.append({"file": "corrupt.parquet", "rows": 300, "valid": 200, "rejects": {"malformed-parquet": 100}})
    return out


if __name__ == "__main__":
    print(f"wrote {len(build())} cases to {HERE}")
