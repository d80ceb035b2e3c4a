"""OpenAssistant (OASST1) message trees flattened into conversation paths.

Two on-disk shapes are read: the flat message table of the Hub dataset (one row
per message with ``message_id``, ``parent_id``, ``message_tree_id``, ``role``
prompter|assistant, ``text``, ``rank``, ``lang``), whose rows must be grouped by
tree (they are, in the released files), and the nested ``*.trees.jsonl`` export
(one tree per line, ``prompt`` with ``replies``). A tree becomes either its
top-ranked path (at every node follow the reply with the lowest rank, as
open-instruct and Tulu do) or every root-to-leaf path. Trailing user turns are
dropped so every conversation ends with an assistant turn.
"""

from __future__ import annotations

from typing import Any

from polyinstruct.data.validate import RecordError

PATH_MODES = ("top", "all")
_ROLE = {"prompter": "user", "assistant": "assistant", "user": "user"}


def _rank_key(node: dict[str, Any]) -> tuple[int, float]:
    r = node.get("rank")
    return (0, float(r)) if isinstance(r, (int, float)) else (1, 0.0)


def _message(node: dict[str, Any], where: str) -> dict[str, Any]:
    role = node.get("role")
    if role not in _ROLE:
        raise RecordError("unknown-role", f"unknown OASST role {role!r} (expected prompter or assistant)", field=f"{where}.role")
    text = node.get("text")
    if not isinstance(text, str):
        raise RecordError("missing-field", "message has no text", field=f"{where}.text")
    m = {"role": _ROLE[role], "content": text}
    if node.get("lang"):
        m["language"] = node["lang"]
    return m


def tree_paths(root: dict[str, Any], mode: str = "top") -> list[list[dict[str, Any]]]:
    """Conversation paths (lists of OASST nodes) of a nested tree whose nodes hold ``replies``."""
    if mode not in PATH_MODES:
        raise RecordError("bad-option", f"OASST path mode must be one of {', '.join(PATH_MODES)}, got {mode!r}")

    def live(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [c for c in children or [] if not c.get("deleted")]

    paths: list[list[dict[str, Any]]] = []
    if mode == "top":
        path, node = [root], root
        while True:
            kids = live(node.get("replies"))
            if not kids:
                break
            node = min(kids, key=_rank_key)
            path.append(node)
        paths.append(path)
    else:
        stack = [[root]]
        while stack:
            path = stack.pop()
            kids = live(path[-1].get("replies"))
            if not kids:
                paths.append(path)
            for k in sorted(kids, key=_rank_key, reverse=True):
                stack.append(path + [k])
    out, seen = [], set()
    for path in paths:
        while path and path[-1].get("role") != "assistant":
            path = path[:-1]
        if not path:
            continue
        key = tuple(n.get("message_id") or id(n) for n in path)
        if key in seen:
            continue
        seen.add(key)
        out.append(path)
    return out


def tree_to_records(tree_id: str, root: dict[str, Any], mode: str = "top") -> list[dict[str, Any]]:
    """Canonical dicts for one tree; ids are the tree id (top) or tree id + leaf id (all)."""
    records = []
    for path in tree_paths(root, mode):
        msgs = [_message(n, f"path[{i}]") for i, n in enumerate(path)]
        lang = root.get("lang")
        for m in msgs:  # keep per-message language only where it differs from the prompt's
            if m.get("language") == lang:
                m.pop("language", None)
        rid = tree_id if mode == "top" else f"{tree_id}-{path[-1].get('message_id', len(records))}"
        rec: dict[str, Any] = {"id": rid, "messages": msgs}
        if lang:
            rec["language"] = lang
        records.append(rec)
    if not records:
        raise RecordError("no-final-assistant", "tree has no assistant reply", field="replies", record_id=tree_id)
    return records


def nested_tree_records(row: dict[str, Any], mode: str = "top") -> list[dict[str, Any]]:
    """A line of the ``*.trees.jsonl`` export."""
    root = row.get("prompt")
    if not isinstance(root, dict):
        raise RecordError("missing-field", "OASST tree has no prompt object", field="prompt")
    tree_id = str(row.get("message_tree_id") or root.get("message_id") or "")
    return tree_to_records(tree_id, root, mode)


class FlatTreeGrouper:
    """Collects flat OASST message rows tree by tree and flattens each finished tree.

    Memory holds one tree at a time. Rows of a tree must be contiguous (the
    released files are ordered so); a tree seen again later is an error.
    """

    def __init__(self, mode: str = "top"):
        self.mode = mode
        self.tree_id: str | None = None
        self.rows: list[dict[str, Any]] = []
        self.first_line: int | None = None
        self.done: set[str] = set()

    def add(self, row: dict[str, Any], line: int) -> tuple[int | None, list[dict[str, Any]]] | None:
        """Feed one row; returns ``(first line, records)`` of the previous tree when it ended."""
        for f in ("message_id", "message_tree_id", "role", "text"):
            if f not in row:
                raise RecordError("missing-field", f"OASST message has no {f}", field=f)
        tid = str(row["message_tree_id"])
        finished = None
        if tid != self.tree_id:
            if tid in self.done:
                raise RecordError("unsorted-tree", f"rows of OASST tree {tid} are not contiguous; sort the file by "
                                  "message_tree_id", field="message_tree_id")
            finished = self.flush()
            self.tree_id, self.first_line = tid, line
        self.rows.append(row)
        return finished

    def flush(self) -> tuple[int | None, list[dict[str, Any]]] | None:
        if self.tree_id is None:
            return None
        rows, tid, line = self.rows, self.tree_id, self.first_line
        self.done.add(tid)
        self.rows, self.tree_id, self.first_line = [], None, None
        by_id = {r["message_id"]: dict(r, replies=[]) for r in rows}
        root = None
        for r in by_id.values():
            parent = r.get("parent_id")
            if parent is None or parent == "":
                root = r
            elif parent in by_id:
                by_id[parent]["replies"].append(r)
        if root is None:
            raise RecordError("missing-field", f"OASST tree {tid} has no root message (parent_id null)",
                              field="parent_id", path=None, line=line)
        return line, tree_to_records(tid, root, self.mode)


def is_flat_row(row: dict[str, Any]) -> bool:
    return "message_tree_id" in row and "parent_id" in row and "text" in row
