"""Shared training-test fixtures: a 16-conversation multilingual set and a base config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

QA = [
    ("en", "Give three tips for staying healthy.", "Eat fruit, sleep well and walk daily."),
    ("fr", "Donnez trois conseils pour rester en bonne santé.", "Mangez des fruits et dormez bien."),
    ("es", "¿Cuál es la capital de España?", "La capital de España es Madrid."),
    ("ru", "Объясните, почему небо голубое.", "Небо голубое из-за рассеяния света."),
    ("zh", "天空为什么是蓝色的？", "因为阳光被空气散射。"),
    ("bg", "Дайте три съвета за здраве.", "Спете, яжте плодове и ходете."),
    ("en", "What is 12 times 7?", "12 times 7 is 84."),
    ("de", "Was springt über den faulen Hund?", "Der schnelle braune Fuchs."),
    ("en", "Write a short poem about the sea.", "Blue waves hum, the quiet sea."),
    ("fr", "Qui saute par-dessus le chien?", "Le renard brun rapide."),
    ("es", "¿Qué salta sobre el perro?", "El rápido zorro marrón."),
    ("en", "Summarize the text.", "A summary of the long text."),
    ("ru", "Кто прыгает через собаку?", "Быстрая коричневая лиса."),
    ("en", "def add(a, b): what does it return?", "It returns a + b, so add(2, 3) is 5."),
    ("fr", "Expliquez pourquoi le ciel est bleu.", "La lumière est diffusée par l'air."),
    ("en", "Hello!", "Hi, how can I help?"),
]


def write_conversations(path: Path, rows=QA) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, (lang, q, a) in enumerate(rows):
            rec = {"id": f"ex{i}", "language": lang,
                   "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="session")
def train_file(tmp_path_factory) -> Path:
    return write_conversations(tmp_path_factory.mktemp("train-data") / "train.jsonl")


@pytest.fixture
def base_config(tiny_model_dir, train_file, tmp_path):
    """A small valid config dict; tests override what they exercise."""
    def make(**kw):
        cfg = {"model": str(tiny_model_dir), "template": "tulu", "data": [str(train_file)],
               "output_dir": str(tmp_path / "run"), "method": "lora", "global_batch_size": 8,
               "micro_batch_size": 4, "epochs": 1, "lr": 1e-3, "seed": 0}
        cfg.update(kw)
        return cfg
    return make


@pytest.fixture(autouse=True, scope="session")
def _one_cpu_thread():
    """Two torch threads on a busy 2-core VM spin against each other (measured 60x slower); the
    tests check numbers, not speed, and torchrun subprocesses get OMP_NUM_THREADS=1 anyway."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _private_tokenized_cache(tmp_path_factory):
    """Training caches tokenized datasets under the polyinstruct cache; tests keep theirs private."""
    import os

    before = os.environ.get("POLYINSTRUCT_CACHE_DIR")
    os.environ["POLYINSTRUCT_CACHE_DIR"] = str(tmp_path_factory.mktemp("polyinstruct-cache"))
    yield
    if before is None:
        os.environ.pop("POLYINSTRUCT_CACHE_DIR", None)
    else:
        os.environ["POLYINSTRUCT_CACHE_DIR"] = before
