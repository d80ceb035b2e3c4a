"""Fixtures for inference tests: a tiny model whose greedy output varies with the prompt.

The stock tiny model (init std 0.02) greedily emits one token forever, which would
make "batched equals one-by-one" trivially true. Re-drawing the weight matrices with
a larger std gives varied, prompt-dependent text, so the equality tests can fail.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

SIMPLE_TEMPLATE_STOPS = ["<|user|>"]


def simple_template(messages: list[dict[str, str]]) -> str:
    return "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"


def make_varied_model(src, dst, std: float = 0.15, seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(src))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    model.save_pretrained(str(dst))
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, dst / f.name)
    return dst


@pytest.fixture(scope="session")
def varied_model_dir(tiny_model_dir, tmp_path_factory):
    return make_varied_model(tiny_model_dir, tmp_path_factory.mktemp("varied-llama"))


@pytest.fixture(scope="session")
def hf_backend(varied_model_dir):
    from polyinstruct.infer.hf import HFBackend
    from polyinstruct.infer.prompting import PromptFormat

    fmt = PromptFormat("simple", simple_template, list(SIMPLE_TEMPLATE_STOPS), "explicit")
    return HFBackend.from_path(varied_model_dir, template=fmt, device="cpu", batch_size=4)


PROMPTS = [
    "Give three tips for staying healthy.",
    "Hi",
    "Объясните, почему небо голубое.",
    "请给出三个保持健康的建议。天空为什么是蓝色的？",
    "Write a short poem about the sea. " * 3,
    "What is 12 times 7?",
    "আকাশ কেন নীল?",
]


@pytest.fixture(scope="session")
def conversations():
    return [[{"role": "user", "content": p}] for p in PROMPTS]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """A uvicorn server on a free loopback port, in a thread, for one test module."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
