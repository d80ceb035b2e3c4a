"""fileio: atomic writes with normal permissions, located errors for corrupt JSONL lines."""

from __future__ import annotations

import os
import stat

import pytest

from polyinstruct.errors import DataError
from polyinstruct.fileio import atomic_open, iter_jsonl, iter_jsonl_numbered, write_json, write_jsonl


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize("umask,expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_get_the_usual_permissions_not_0600(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_jsonl(tmp_path / "b.jsonl", [{"x": 1}])
        with atomic_open(tmp_path / "c.bin", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert [_mode(tmp_path / n) for n in ("a.json", "b.jsonl", "c.bin")] == [expected] * 3


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    p = tmp_path / "report.html"
    p.write_text("old")
    os.chmod(p, 0o640)
    with atomic_open(p) as f:
        f.write("new")
    assert p.read_text() == "new" and _mode(p) == 0o640
    assert [x.name for x in tmp_path.iterdir()] == ["report.html"]  # no temp file left


def test_corrupt_jsonl_lines_are_located_and_a_torn_tail_is_ignored(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"id": 1}\n\n{"id": 2\n{"id": 3}\n{"id": 4, "tor')
    with pytest.raises(DataError, match=r"x.jsonl:3: invalid JSON"):
        list(iter_jsonl(p))
    assert [n for n, _ in iter_jsonl_numbered(p, skip_bad=True)] == [1, 4]
    p.write_bytes(b'{"id": 1}\n"just a string"\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: expected a JSON object, got str"):
        list(iter_jsonl(p))
    p.write_bytes(b'{"id": 1}\n{"id": "\xff"}\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: not valid UTF-8"):
        list(iter_jsonl(p))
