"""The guides' shell examples work as written (issue 10 item 11).

Every ``polyinstruct`` command in a ```bash block of docs/*.md and README.md must parse with
the real command line (a renamed command or option fails here), every `polyinstruct WORD`
mentioned in the text must be a real command, and the examples that need no network, no
trained run and no user file are run in-process (each well under a second or two):

    data list | data stats NAME | data recipe ... | template list | template show NAME
    models list | lid TEXT... | lid --eval | validate CONFIG | train --help

Where an example is followed by ``# {json}`` lines, they must equal its output (numbers to 0.005).

Not run (each still parsed), and why -- see ``EXCLUDED``: training, merging, predicting,
chatting, serving, judging and experiments take minutes, a trained run, a server or the
network (tests/train, tests/infer, tests/judge, tests/experiment cover them); ``models
prepare`` converts a GGUF package (about a minute); ``data validate/convert/chunk/clean/mix``,
``tokenize``, ``annotate`` and ``lid --jsonl`` read the user's own files; commands with
placeholder arguments (``...``, ``path/to/...``, ``$VAR``) or input files that are not in the
repository (the user's data, or a file an earlier example makes) cannot run as written.
``validate examples/train/quickstart_lora.yaml`` runs with the tiny local model in place of the
packaged one (preparing that takes a minute); everything else runs exactly as written.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from polyinstruct.cli import build_parser, main, parse_args

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

RUNNABLE = [("data", "list"), ("data", "stats"), ("data", "recipe"), ("template", "list"), ("template", "show"),
            ("models", "list"), ("lid",), ("validate",), ("train", "--help")]
EXCLUDED = {
    ("lid", "--jsonl"): "reads the user's predictions file",
    ("train",): "trains a model (minutes); tests/train runs training",
    ("merge",): "needs a finished LoRA run",
    ("predict",): "needs a trained run and the user's prompts; tests/infer runs predict",
    ("chat",): "interactive",
    ("serve",): "starts a server that runs until stopped; tests/infer/test_serve.py drives it",
    ("judge",): "asks a judge model over HTTP; tests/judge uses a scripted server",
    ("judge-agreement",): "needs human judgment files",
    ("experiment",): "runs a whole grid (minutes to hours); tests/experiment runs a miniature one",
    ("quickstart",): "runs the built-in experiment (about 10 minutes)",
    ("report",): "needs a finished experiment",
    ("models", "prepare"): "converts a GGUF registry package into a checkpoint (about a minute)",
    ("data", "validate"): "reads the user's own file", ("data", "convert"): "reads the user's own file",
    ("data", "chunk"): "reads the user's own file", ("data", "clean"): "reads the user's own file",
    ("data", "mix"): "reads the user's mixture YAML",
    ("tokenize",): "needs a local model path", ("annotate",): "needs a judgment database or starts a server",
}
PLACEHOLDER = re.compile(r"\.\.\.|^\.\.$|path/to|\$|^<.*>$|^[A-Z_]+\.yaml$|^PATH$")


def _blocks(path: Path):
    text = path.read_text(encoding="utf-8")
    for m in re.finditer(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S):
        yield text[:m.start()].count("\n") + 2, m.group(1).splitlines()


def _commands():
    """(file:line, argv after `polyinstruct`, expected output lines) for every example."""
    out = []
    for path in DOCS:
        for first, lines in _blocks(path):
            i = 0
            while i < len(lines):
                lineno, line = first + i, lines[i]
                while line.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line.rstrip()[:-1] + " " + lines[i]
                i += 1
                expected = []
                while i < len(lines) and lines[i].lstrip().startswith("# {"):
                    expected.append(lines[i].lstrip()[2:])
                    i += 1
                if line.lstrip().startswith("#") or "polyinstruct" not in line:
                    continue
                tokens = shlex.split(line, comments=True)
                for part in " ".join(shlex.quote(t) for t in tokens).split(" && "):
                    argv = shlex.split(part)
                    if "-m" in argv and argv[argv.index("-m") + 1:argv.index("-m") + 2] == ["polyinstruct"]:
                        argv = argv[argv.index("-m") + 2:]
                    else:
                        while argv and re.fullmatch(r"[A-Z_]+=.*", argv[0]):  # VAR=value prefix
                            argv = argv[1:]
                        if not argv or argv[0] != "polyinstruct":
                            continue
                        argv = argv[1:]
                    argv = [a for a in argv if a != "&"]
                    out.append((f"{path.relative_to(ROOT)}:{lineno}", argv, expected))
    return out


COMMANDS = _commands()


OUTPUT_OPTIONS = ("--out", "--output-dir", "--save")
INPUT_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".yaml", ".yml", ".sqlite", ".txt")


def _classify(argv: list[str]) -> str | None:
    """None when the example runs here, else why not."""
    if any(PLACEHOLDER.search(a) for a in argv):
        return "placeholder argument"
    for i, a in enumerate(argv):
        is_output = i > 0 and argv[i - 1] in OUTPUT_OPTIONS
        if not is_output and a.endswith(INPUT_SUFFIXES) and "=" not in a and not (ROOT / a).exists():
            return f"reads {a}, the user's file or one an earlier step makes"
    for prefix, why in EXCLUDED.items():
        if tuple(a for a in argv if a in prefix) == prefix and argv[0] == prefix[0]:
            if prefix == ("train",) and "--help" in argv:
                break
            return why
    if any(tuple(argv[:len(p)]) == p for p in RUNNABLE):
        return None
    return "not in the offline list"


def test_examples_were_found():
    assert len(COMMANDS) > 40
    assert sum(_classify(a) is None for _, a, _ in COMMANDS) >= 10


@pytest.mark.parametrize("where,argv,expected", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_documented_command_parses(where, argv, expected):
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parse_args(parser, argv)
    except SystemExit as e:
        assert e.code == 0, f"{where}: `polyinstruct {' '.join(argv)}` does not parse: {err.getvalue().strip()}"


def test_commands_named_in_the_text_exist():
    parser = build_parser()
    commands = set(next(a for a in parser._actions if a.dest == "command").choices)
    bad = []
    for path in DOCS:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for word in re.findall(r"`polyinstruct ([a-z][\w-]*)", line):
                if word not in commands:
                    bad.append(f"{path.relative_to(ROOT)}:{n}: polyinstruct {word}")
    assert not bad, "documented commands that do not exist:\n" + "\n".join(bad)


RUN = [c for c in COMMANDS if _classify(c[1]) is None]


@pytest.mark.parametrize("where,argv,expected", RUN, ids=[c[0] for c in RUN])
def test_offline_examples_run_and_print_what_the_docs_show(where, argv, expected, tmp_path, monkeypatch,
                                                            tiny_model_dir):
    monkeypatch.chdir(tmp_path)  # outputs (recipe --out ...) land in a scratch folder
    monkeypatch.setenv("POLYINSTRUCT_CACHE_DIR", str(tmp_path / "cache"))
    argv = [str(ROOT / a) if a.startswith("examples/") else a for a in argv]
    if argv[0] == "validate":  # the packaged model takes a minute to prepare: the tiny one stands in
        argv = [*argv, f"model={tiny_model_dir}"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # --help
            rc = e.code
    assert rc == 0, f"{where}: `polyinstruct {' '.join(argv)}` failed: {err.getvalue()[-800:]}"
    if expected:
        got = [json.loads(x) for x in out.getvalue().splitlines() if x.startswith("{")]
        want = [json.loads(x) for x in expected]
        assert len(got) == len(want), (where, got)
        for g, w in zip(got, want):
            assert set(g) == set(w), (where, g, w)
            for k, v in w.items():
                assert g[k] == pytest.approx(v, abs=0.005) if isinstance(v, float) else g[k] == v, (where, k, g, w)


def test_inference_guide_names_every_option_the_server_refuses():
    """docs/inference.md lists what the server rejects and its limits' defaults (H10a's serve)."""
    import inspect

    from polyinstruct.infer import serve

    guide = (ROOT / "docs" / "inference.md").read_text(encoding="utf-8")
    missing = [name for name in serve.UNSUPPORTED_OPTIONS if f"`{name}`" not in guide]
    assert not missing, f"docs/inference.md does not name these refused options: {missing}"
    defaults = inspect.signature(serve.create_app).parameters
    for flag, param in (("--max-prompts-per-request", "max_prompts_per_request"),
                        ("--max-queued-tokens", "max_queued_tokens")):
        assert f"`{flag}`" in guide and f"default {defaults[param].default}" in guide, flag
