"""Audit: the package's layers hold (docs/architecture.md, "Layers").

A source scan in the style of tests/test_no_code_from_disk.py: every import of a
``polyinstruct`` module (top level, inside functions, and lazy ``"polyinstruct.x.y"`` /
``"polyinstruct.x.y:obj"`` strings handed to ``importlib`` or a lazy registry; not the imports
under ``if TYPE_CHECKING:``, which never run) is an arrow
from one area (the first folder under ``polyinstruct/``) to another. An arrow may only
point to an area in a lower layer of ``LAYERS``; areas in the same layer do not import each
other. Within an area, files must not import each other in a cycle (lazy strings excepted: a
registry may name the modules that register into it), and no file imports a private
(``_name``) object from another area.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "polyinstruct"

# Bottom to top: an area may import areas of lower layers only (the same order as docs/architecture.md).
LAYERS: list[list[str]] = [
    ["errors"],
    ["registry", "yamlio", "fileio", "stats", "progress"],
    ["config"],
    ["lang"],
    ["data"],
    ["templates", "models"],
    ["train"],
    ["infer"],  # reads what train writes: run directories, and which adapters merge (train.methods)
    ["judge", "translate", "evalsets", "prefs"],
    ["eval", "annotate", "analysis"],
    ["report"],
    ["experiment"],
    ["cli"],
    ["__main__"],
]

_LAZY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+(:[A-Za-z_]\w*)?$")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(root: Path) -> list[tuple[str, str, int, list[str], bool]]:
    """``(importer, imported module, line, names, lazy)`` for every ``root`` module imported anywhere in
    ``root``; ``lazy``: named by a ``"module:object"`` string (resolved on use, not at import)."""
    top = root.name
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    out = []
    for mod, path in sorted(modules.items()):
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: never imported at run time
                continue
            found: list[tuple[str, list[str]]] = []
            lazy = False
            if isinstance(node, ast.Import):
                found = [(a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    parts = parts[:len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([node.module] if node.module else []))
                names = [a.name for a in node.names]
                subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
                rest = [n for n in names if f"{base}.{n}" not in modules]
                found = [(s, []) for s in subs] + ([(base, rest)] if rest or not subs else [])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _LAZY.match(node.value):
                target, _, obj = node.value.partition(":")
                if target in modules:
                    found, lazy = [(target, [obj] if obj else [])], True
            for target, names in found:
                if target == top or target.startswith(top + "."):
                    if target in modules:
                        out.append((mod, target, node.lineno, names, lazy))
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _area(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_problems(root: Path, layers: list[list[str]]) -> list[str]:
    """Every arrow against ``layers``, every cycle (between areas, and between files of one area),
    and every private name imported from another area."""
    rank = {area: i for i, layer in enumerate(layers) for area in layer}
    problems = []
    areas: dict[str, set[str]] = {}
    files: dict[str, set[str]] = {}
    for src, dst, line, names, lazy in read_imports(root):
        a, b = _area(src), _area(dst)
        where = f"{src.replace('.', '/')}:{line}"
        if not a or not b:
            continue
        if a != b:
            areas.setdefault(a, set()).add(b)
            for n in (a, b):
                if n not in rank:
                    problems.append(f"{where}: area '{n}' has no layer in LAYERS")
            if a in rank and b in rank and rank[b] >= rank[a]:
                problems.append(f"{where}: {a} imports {b} ({dst}), which is not in a lower layer")
            private = [n for n in names if n.startswith("_")] + (
                [dst.rsplit(".", 1)[1]] if dst.rsplit(".", 1)[1].startswith("_") else [])
            for n in private:
                problems.append(f"{where}: private name {n} imported from another area ({dst})")
        elif src != dst and not lazy:  # a lazy entry is resolved on use: it cannot break an import order
            files.setdefault(src, set()).add(dst)
    for comp in _cycles(areas):
        problems.append("import cycle between areas: " + " -> ".join(comp))
    for comp in _cycles(files):
        problems.append(f"import cycle between files of {_area(comp[0])}: " + " -> ".join(comp))
    return sorted(set(problems))


def test_the_package_keeps_its_layers():
    problems = layer_problems(PACKAGE, LAYERS)
    assert not problems, "\n".join(problems)


def test_every_area_has_a_layer():
    areas = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    declared = {a for layer in LAYERS for a in layer}
    assert areas == declared, f"undeclared {sorted(areas - declared)}, gone {sorted(declared - areas)}"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    for d in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (d / "__init__.py").touch()
    return root


LOW_HIGH = [["low"], ["high"]]


def test_a_planted_back_arrow_is_caught(tmp_path):
    root = _tree(tmp_path, {
        "low/a.py": "def f():\n    from pkg.high.b import g\n    return g()\n",  # inside a function
        "high/b.py": "from pkg.low.a import f\n\ndef g():\n    return 1\n",
    })
    problems = layer_problems(root, LOW_HIGH)
    assert any("pkg/low/a:2: low imports high" in p for p in problems), problems
    assert any(p.startswith("import cycle between areas: high -> low") for p in problems), problems


def test_a_lazy_string_reference_counts_as_an_arrow(tmp_path):
    root = _tree(tmp_path, {
        "low/a.py": "ENTRIES = {'x': 'pkg.high.b:Thing'}\n",
        "high/b.py": "class Thing: ...\n",
    })
    assert any("low imports high" in p for p in layer_problems(root, LOW_HIGH))


def test_type_checking_imports_do_not_count(tmp_path):
    root = _tree(tmp_path, {
        "low/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high.b import T\n",
        "high/b.py": "",
    })
    assert layer_problems(root, LOW_HIGH) == []


def test_same_layer_relative_imports_file_cycles_and_private_names(tmp_path):
    root = _tree(tmp_path, {
        "low/a.py": "from . import b\n",
        "low/b.py": "from .a import x\n",
        "high/c.py": "from pkg.low.b import _helper\nfrom pkg.low import _priv\n",
        "low/_priv.py": "",
    })
    problems = layer_problems(root, LOW_HIGH)
    assert "import cycle between files of low: pkg.low.a -> pkg.low.b" in problems, problems
    assert any("private name _helper" in p for p in problems), problems
    assert any("private name _priv" in p for p in problems), problems
    assert not any("imports" in p and "lower layer" in p for p in problems), problems
    root2 = _tree(tmp_path / "two", {"low/a.py": "", "mid/b.py": "import pkg.low.a\n"})
    assert any("area 'mid' has no layer" in p for p in layer_problems(root2, LOW_HIGH))
    assert any("low imports high" in p
               for p in layer_problems(_tree(tmp_path / "three", {"low/a.py": "import pkg.high\n", "high/x.py": ""}),
                                       LOW_HIGH))
