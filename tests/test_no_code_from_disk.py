"""Audit: nothing polyinstruct reads from disk or the network can execute code.

A source scan, so a new loader cannot slip in unnoticed: every ``torch.load`` passes
``weights_only=True``; no ``pickle``/``dill``/``marshal``/``shelve`` loading, no ``yaml.load``
other than ``safe_load``, no ``trust_remote_code=True``, Jinja only through the sandbox,
no ``eval``/``exec`` of text. (The behaviour itself is tested where each loader lives, e.g.
tests/train/test_checkpoint_safety.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "polyinstruct"
# Reviewed exceptions: (file, what) -> why it cannot run code from user input.
REVIEWED = {
    ("polyinstruct/annotate/web.py", "jinja2 Environment"):
        "renders only the package's own HTML templates (autoescape on); user text is data, never a template",
    ("polyinstruct/eval/_sandbox_init.py", "exec"):
        "code-execution benchmarks run generated programs on purpose, only inside the eval sandbox",
}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            bare = isinstance(f, ast.Name)
            yield node, owner, name, bare


def test_no_loader_in_the_package_can_run_code():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, owner, name, bare in _calls(tree):
            where = f"{rel}:{node.lineno}"
            kwargs = {k.arg: k.value for k in node.keywords}
            if owner == "torch" and name == "load":
                wo = kwargs.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            if owner in ("pickle", "dill", "marshal", "cloudpickle", "joblib") and name in ("load", "loads"):
                problems.append(f"{where}: {owner}.{name}")
            if owner == "shelve" and name == "open":
                problems.append(f"{where}: shelve.open")
            if owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all"):
                loader = kwargs.get("Loader")
                loader_name = loader.id if isinstance(loader, ast.Name) else getattr(loader, "attr", "")
                if name in ("unsafe_load", "full_load") or "Safe" not in loader_name:
                    problems.append(f"{where}: yaml.{name} without a SafeLoader")
            if owner in ("np", "numpy") and name == "load":
                ap = kwargs.get("allow_pickle")
                if not (isinstance(ap, ast.Constant) and ap.value is False):
                    problems.append(f"{where}: numpy.load without allow_pickle=False")
            trc = kwargs.get("trust_remote_code")
            if trc is not None and not (isinstance(trc, ast.Constant) and trc.value is False):
                problems.append(f"{where}: trust_remote_code not literally False")
            if name in ("Environment", "NativeEnvironment") and (owner == "jinja2" or bare) \
                    and (str(rel), "jinja2 Environment") not in REVIEWED:
                problems.append(f"{where}: unsandboxed jinja2 {name} (use jinja2.sandbox)")
            if bare and name in ("eval", "exec") and (str(rel), name) not in REVIEWED:
                problems.append(f"{where}: {name}()")
    assert not problems, "\n".join(problems)
