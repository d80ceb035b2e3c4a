"""Code, tests, benchmarks and docs cite the project's own docs (docs/studies.md for the studies),
never files outside the repository that a user of polyinstruct does not have."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = re.compile(r"SEEDS\.md|ARCHITECTURE\.md|OFFLINE_ASSETS\.md|STYLE\.md|\.\./shared/|shared/(spec|seeds)/")


def test_no_citation_of_files_outside_the_repository():
    hits = []
    for folder in ("polyinstruct", "tests", "bench", "docs", "examples"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".md", ".yaml", ".yml", ".txt", ".html", ".js") or path == Path(__file__):
                continue
            for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if OUTSIDE.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    for name in ("README.md",):
        for i, line in enumerate((ROOT / name).read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{name}:{i}: {line.strip()[:100]}")
    assert not hits, "cite docs/studies.md (or another docs/ page) instead:\n" + "\n".join(hits)


def test_studies_page_covers_the_four_studies():
    text = (ROOT / "docs" / "studies.md").read_text(encoding="utf-8")
    for heading in ("## Study 1", "## Study 2", "## Study 3", "## Study 4", "## How polyinstruct states uncertainty"):
        assert heading in text
    assert text.count("**Not") >= 4  # each study says what is not reproduced yet
