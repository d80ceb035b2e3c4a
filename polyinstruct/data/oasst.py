"""OpenAssistant (OASST1) message trees flattened into conversation paths.

Two on-disk shapes are read: the flat message table of the Hub dataset (one row
per message with ``message_id``, ``parent_id``, ``message_tree_id``, ``role``
prompter|assistant, ``text``, ``rank``, ``lang``), whose rows must be grouped by
tree (they are, in the released files), and the nested ``*.trees.jsonl`` export
(one tree per line, ``prompt`` with ``replies``). A tree becomes either its
top-ranked path (at every node follow the reply with the lowest rank, as
open-instruct and Tulu do) or every root-to-leaf path. Trailing user turns are
dropped so every conversation ends with an assistant turn.

Broken trees lose no row silently: in the flat table, a duplicate
``message_id``, a message that is its own parent, a second root, an orphan
(its parent is not in the tree, or was rejected), a cycle, and a row without a
valid role/text are each a reject naming the row's line and the reason; the
rest of the tree is still used. Messages of a valid tree that lie on no chosen
path (the lower-ranked replies, in ``top`` mode) are counted as ``unselected``.
"""

from __future__ import annotations

from typing import Any

from polyinstruct.data.validate import RecordError
from polyinstruct.lang.codes import language_code_problem

PATH_MODES = ("top", "all")
_ROLE = {"prompter": "user", "assistant": "assistant", "user": "user"}


def _rank_key(node: dict[str, Any]) -> tuple[int, float]:
    r = node.get("rank")
    return (0, float(r)) if isinstance(r, (int, float)) else (1, 0.0)


def _message(node: dict[str, Any], where: str) -> dict[str, Any]:
    role = node.get("role")
    if not isinstance(role, str) or role not in _ROLE:
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

    def live(node: dict[str, Any]) -> list[dict[str, Any]]:
        children = node.get("replies")
        if children is None:
            return []
        if not isinstance(children, list):
            raise RecordError("bad-type", f"replies must be a list of messages, got {type(children).__name__}",
                              field=f"message {node.get('message_id', '?')}.replies")
        for j, c in enumerate(children):
            if not isinstance(c, dict):
                raise RecordError("bad-type", f"a reply must be a message object, got {type(c).__name__}",
                                  field=f"message {node.get('message_id', '?')}.replies[{j}]")
        return [c for c in children if not c.get("deleted")]

    paths: list[list[dict[str, Any]]] = []
    if mode == "top":
        path, node = [root], root
        while True:
            kids = live(node)
            if not kids:
                break
            node = min(kids, key=_rank_key)
            path.append(node)
        paths.append(path)
    else:
        stack = [[root]]
        while stack:
            path = stack.pop()
            kids = live(path[-1])
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


def tree_to_records(tree_id: str, root: dict[str, Any], mode: str = "top",
                    used: set[Any] | None = None) -> list[dict[str, Any]]:
    """Canonical dicts for one tree; ids are the tree id (top) or tree id + leaf id (all).

    ``used`` (when given) receives the ``message_id`` of every message on an output path.
    """
    records = []
    for path in tree_paths(root, mode):
        if used is not None:
            used.update(n.get("message_id") for n in path)
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
    tree_id = row.get("message_tree_id") or root.get("message_id") or ""
    if not isinstance(tree_id, (str, int)) or isinstance(tree_id, bool):
        raise RecordError("bad-type", f"message_tree_id must be a string, got {type(tree_id).__name__}",
                          field="message_tree_id")
    tree_id = str(tree_id)
    return tree_to_records(tree_id, root, mode)


class FlatTreeGrouper:
    """Collects flat OASST message rows tree by tree and flattens each finished tree.

    Memory holds one tree at a time. Rows of a tree must be contiguous (the
    released files are ordered so); a tree seen again later is an error.
    """

    def __init__(self, mode: str = "top"):
        self.mode = mode
        self.tree_id: str | None = None
        self.rows: list[tuple[dict[str, Any], int]] = []
        self.first_line: int | None = None
        self.done: set[str] = set()

    def add(self, row: dict[str, Any], line: int) -> "FlatTree | None":
        """Feed one row; returns the previous tree, flattened, when this row starts a new one."""
        for f in ("message_id", "message_tree_id", "role", "text"):
            if f not in row:
                raise RecordError("missing-field", f"OASST message has no {f}", field=f)
        for f in ("message_id", "message_tree_id"):
            v = row[f]
            if not isinstance(v, (str, int)) or isinstance(v, bool) or v == "":
                raise RecordError("bad-type", f"{f} must be a non-empty string, got {type(v).__name__} {v!r}", field=f)
        tid = str(row["message_tree_id"])
        finished = None
        if tid != self.tree_id:
            if tid in self.done:
                raise RecordError("unsorted-tree", f"rows of OASST tree {tid} are not contiguous; sort the file by "
                                  "message_tree_id", field="message_tree_id")
            finished = self.flush()
            self.tree_id, self.first_line = tid, line
        self.rows.append((row, line))
        return finished

    def flush(self) -> "FlatTree | None":
        if self.tree_id is None:
            return None
        rows, tid, line = self.rows, self.tree_id, self.first_line
        self.done.add(tid)
        self.rows, self.tree_id, self.first_line = [], None, None
        return flatten_flat_tree(tid, rows, self.mode, line)


class FlatTree:
    """One flat tree's outcome: records, per-row rejects (located), and the count of unselected messages."""

    def __init__(self, tree_id: str, first_line: int | None):
        self.tree_id, self.first_line = tree_id, first_line
        self.records: list[dict[str, Any]] = []
        self.rejects: list[tuple[RecordError, dict[str, Any]]] = []
        self.unselected = 0
        self.rows = 0


def flatten_flat_tree(tid: str, rows: list[tuple[dict[str, Any], int]], mode: str,
                      first_line: int | None) -> FlatTree:
    """Check one tree's rows, reject the broken ones with their reason and flatten the rest."""
    out = FlatTree(tid, first_line)
    out.rows = len(rows)
    nodes: dict[Any, dict[str, Any]] = {}  # message_id -> node (a copy with replies)
    lines: dict[Any, int] = {}
    bad: dict[Any, str] = {}  # message_id -> why it was rejected (for its children's reason)
    orig: dict[Any, dict[str, Any]] = {}  # message_id -> the row as read (for the rejects file)

    def reject(row: dict[str, Any], line: int, kind: str, reason: str, field: str) -> None:
        out.rejects.append((RecordError(kind, reason, field=field, line=line, record_id=tid), row))

    for row, ln in rows:
        mid = row["message_id"]
        if mid in lines:
            reject(row, ln, "duplicate-message-id", f"message_id {mid!r} already used at line {lines[mid]} "
                   f"(tree {tid})", "message_id")
            continue
        lines[mid], orig[mid] = ln, row
        try:
            _message(row, "message")
            if not row["text"].strip():
                raise RecordError("empty-text", "message text is empty", field="text")
            lang = row.get("lang")
            if lang not in (None, "") and language_code_problem(lang):
                raise RecordError("bad-language", language_code_problem(lang) or "", field="lang")
        except RecordError as e:
            bad[mid] = "invalid"
            reject(row, ln, e.kind, e.reason, e.field or "message")
            continue
        parent = row.get("parent_id")
        if parent == mid:
            bad[mid] = "self-parent"
            reject(row, ln, "self-parent", f"message {mid!r} is its own parent", "parent_id")
            continue
        nodes[mid] = dict(row, replies=[])
    roots = [m for m, n in nodes.items() if n.get("parent_id") in (None, "")]
    root = roots[0] if roots else None
    for m in roots[1:]:
        bad[m] = "extra-root"
        reject(orig[m], lines[m], "extra-root", f"tree {tid} already has a root (message {root!r} at line "
               f"{lines[root]}); this message has no parent_id too", "parent_id")
        del nodes[m]
    # Reachable messages: a walk from the root over parent links (iterative: no recursion limit).
    children: dict[Any, list[Any]] = {}
    for m, n in nodes.items():
        if m != root:
            children.setdefault(n.get("parent_id"), []).append(m)
    reach: set[Any] = set()
    if root is not None:
        stack = [root]
        while stack:
            m = stack.pop()
            reach.add(m)
            stack.extend(c for c in children.get(m, ()) if c not in reach)
    for m in sorted((m for m in nodes if m not in reach), key=lambda m: lines[m]):
        n = nodes[m]
        if root is None:
            kind, reason = "no-root", f"tree {tid} has no root message (none with parent_id null)"
        else:
            # walk up until a missing parent, a rejected message or a repeat (a cycle)
            seen, cur = {m}, n.get("parent_id")
            while cur in nodes and cur not in reach and cur not in seen:
                seen.add(cur)
                cur = nodes[cur].get("parent_id")
            if cur in seen:
                kind, reason = "cycle", f"message {m!r} is on a parent_id cycle ({cur!r} is its own ancestor)"
            elif cur in bad:
                kind, reason = "orphan", f"message {m!r} descends from message {cur!r}, which was rejected ({bad[cur]})"
            else:
                kind, reason = "orphan", f"parent {cur!r} of message {m!r} is not in tree {tid}"
        reject(orig[m], lines[m], kind, reason, "parent_id")
    if root is None:
        return out
    kept = {m: nodes[m] for m in reach}
    for m, n in kept.items():
        if m != root:
            kept[n["parent_id"]]["replies"].append(n)
    for n in kept.values():  # replies in file order
        n["replies"].sort(key=lambda c: lines[c["message_id"]])
    used: set[Any] = set()
    try:
        out.records = tree_to_records(tid, kept[root], mode, used)
    except RecordError as e:
        for m in sorted(kept, key=lambda m: lines[m]):
            reject(orig[m], lines[m], e.kind, f"{e.reason} (tree {tid})", e.field or "replies")
        return out
    out.unselected = len(reach - used)
    return out


def is_flat_row(row: dict[str, Any]) -> bool:
    return "message_tree_id" in row and "parent_id" in row and "text" in row
