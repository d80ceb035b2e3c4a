"""Fixtures for the annotation app: prediction files in several scripts, accounts, a
scripted streaming backend behind the project's own OpenAI-compatible server, and a
real browser (Debian's chromium driven by Playwright, installed by .ci/run)."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from contextlib import ExitStack

import pytest

PROMPTS = {
    "en": "Give three tips for staying healthy.",
    "zh": "请给出三个保持健康的建议。",
    "bn": "সুস্থ থাকার তিনটি টিপস দিন।",
    "ru": "Дайте три совета, как оставаться здоровым.",
    "ar": "أعطني ثلاث نصائح للبقاء بصحة جيدة.",
    "he": "תן שלושה טיפים לשמירה על הבריאות.",
}
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
# Cheap argon2 settings for tests only (the app uses the library defaults).
FAST_HASH = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
PASSWORDS = {"alice": "alice-pass-1", "bob": "bob-pass-22", "carol": "carol-pass-333"}


def write_predictions(folder, systems=("sys-a", "sys-b"), xss_in="sys-b"):
    paths = []
    for s in systems:
        p = folder / f"{s}.jsonl"
        with open(p, "w", encoding="utf-8") as f:
            for i, (lang, prompt) in enumerate(PROMPTS.items()):
                resp = XSS if (s == xss_in and lang == "en") else f"{prompt}\n— answer {i}{'.' if s == systems[0] else '!'}\n1. sleep\n2. eat well"
                f.write(json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": prompt}],
                                    "response": resp, "language": lang, "model": s}, ensure_ascii=False) + "\n")
        paths.append(str(p))
    return paths


@pytest.fixture
def store(tmp_path):
    from polyinstruct.annotate.store import Store

    s = Store(tmp_path / "ann.sqlite", hasher_params=FAST_HASH)
    s.import_predictions(write_predictions(tmp_path), k=2, seed=0)
    for name, pw in PASSWORDS.items():
        s.add_annotator(name, pw, admin=(name == "alice"))
    return s


class ScriptedBackend:
    """Streams fixed tokens with a pause between them, so a page can be seen filling up."""

    name = "scripted"

    def __init__(self, tokens, delay=0.12):
        self.tokens, self.delay = list(tokens), delay
        self.model_name = "scripted"

    def generate(self, conversations, params):
        from polyinstruct.infer.backend import Generation

        return [Generation(text="".join(self.tokens), completion_tokens=len(self.tokens)) for _ in conversations]

    def stream(self, conversation, params):
        for t in self.tokens:
            time.sleep(self.delay)
            yield t


class NoSystemBackend(ScriptedBackend):
    """Like Gemma-2's template: a system turn raises as soon as the prompt is rendered."""

    def stream(self, conversation, params):
        if any(m["role"] == "system" for m in conversation):
            raise ValueError("System role not supported")
        return super().stream(conversation, params)


class CountingBackend(ScriptedBackend):
    """Knows its context (one token per character) like the hf backend."""

    context_length = 100

    def encode_messages(self, messages):
        return list("".join(m["content"] for m in messages))


class RandomBackend(ScriptedBackend):
    """A fresh random reply on every call: a re-roll is visible."""

    def stream(self, conversation, params):
        rng = random.Random()
        for _ in range(8):
            time.sleep(self.delay)
            yield f" w{rng.randrange(10**6)}"


@pytest.fixture
def endpoints():
    """Two OpenAI-compatible loopback servers (``polyinstruct serve``'s app) that stream scripted tokens."""
    from polyinstruct.annotate.app import running
    from polyinstruct.infer.serve import create_app

    with ExitStack() as stack:
        urls = {}
        for name, tokens in (("alpha", ["Hello", " from", " alpha", ": ", "<b>", "not", "</b>", " bold", "."]),
                             ("beta", ["Привет", " от", " beta", "."])):
            app = create_app(ScriptedBackend(tokens), model_name=name)
            urls[name] = stack.enter_context(running(app)) + "/v1"
        yield urls


@pytest.fixture(scope="session")
def chromium_path():
    exe = os.environ.get("POLYINSTRUCT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium with apt-get)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install 'polyinstruct[test]')")
    return exe


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path):
    """Where screenshots go: $POLYINSTRUCT_SCREENSHOTS (kept for a person to look at) or a temp folder."""
    folder = os.environ.get("POLYINSTRUCT_SCREENSHOTS")
    path = (tmp_path / "shots") if not folder else __import__("pathlib").Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path
