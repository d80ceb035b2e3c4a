"""Helpers for training tests: read a run's logs and weights, score memorisation."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def losses(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (Path(folder) / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(str(Path(folder) / name))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@torch.no_grad()
def teacher_forced_accuracy(model, tokenizer, data_file: Path) -> float:
    """Share of assistant tokens the model predicts exactly (argmax) given the gold prefix."""
    from polyinstruct.data.records import Conversation
    from polyinstruct.templates import load_template
    from polyinstruct.templates.tokenize import tokenize_conversation

    template = load_template("tulu", tokenizer)
    right = total = 0
    model.eval()
    for line in Path(data_file).read_text(encoding="utf-8").splitlines():
        ex = tokenize_conversation(Conversation.from_dict(json.loads(line)), tokenizer, template)
        ids, labels = torch.tensor([ex["input_ids"]]), torch.tensor(ex["labels"])
        pred = model(input_ids=ids).logits[0, :-1].argmax(-1)
        keep = labels[1:] != -100
        right += int((pred[keep] == labels[1:][keep]).sum())
        total += int(keep.sum())
    return right / total
