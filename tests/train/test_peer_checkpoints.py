"""Checkpoints peers load (plain peft/transformers), portable adapter base names, the model card,
push_to_hub offline, DoRA/rsLoRA, and a full model's checkpoint stored once yet resumed exactly."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from polyinstruct.train import train
from tests.train.helpers import max_diff, weights


def _step_dirs(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step-*"))


def _ids(tokenizer) -> torch.Tensor:
    return torch.tensor([tokenizer("<|user|>\nBonjour, comment ça va?\n<|assistant|>\n")["input_ids"]])


@pytest.mark.slow
def test_mid_run_lora_checkpoint_loads_with_plain_peft_and_matches_the_runs_loader(base_config, tiny_model_dir):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from polyinstruct.train.config import load_train_config
    from polyinstruct.train.methods import apply_method

    conf = base_config(method="lora", max_steps=4, save_every=2, keep_last=5, lr=1e-2,
                       lora={"target_modules": "all-linear", "dropout": 0.0})
    run = train(conf)
    ckpt = _step_dirs(run)[0]
    assert ckpt.name == "step-00000002"
    assert (ckpt / "adapter_config.json").is_file() and (ckpt / "adapter_model.safetensors").is_file()
    adapter_cfg = json.loads((ckpt / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(tiny_model_dir)  # as the user named it

    tok = AutoTokenizer.from_pretrained(str(ckpt))
    peer = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(ckpt)).eval()
    # the run's own loader: the method applied to the base, trainable weights restored by name (resume path)
    cfg = load_train_config(conf)
    own = apply_method(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), cfg, 4).eval()
    params = dict(own.named_parameters())
    with torch.no_grad():
        for n, t in load_file(str(ckpt / "trainable.safetensors")).items():
            params[n].copy_(t)
    base_only = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    ids = _ids(tok)
    with torch.no_grad():
        a, b, c = peer(input_ids=ids).logits, own(input_ids=ids).logits, base_only(input_ids=ids).logits
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3  # the checkpoint's adapter is really applied (it trained 2 steps)
    card = (run / "README.md").read_text()
    assert card.startswith("---\n") and "base_model:" in card and "library_name: peft" in card
    for lang in ("fr", "ru", "zh"):
        assert f"- {lang}" in card  # the card's language list comes from the data
    assert "## Training config" in card and "train_loss" in card
    assert (run / "adapter" / "README.md").read_text() == card


def test_adapter_base_name_is_the_name_given_not_a_cache_path(tmp_path):
    from polyinstruct.train.run import portable_base_name

    conf = SimpleNamespace(base_model_name_or_path="/home/u/.cache/polyinstruct/models/gemma-3-270m")
    model = SimpleNamespace(peft_config={"default": conf})
    portable_base_name(model, SimpleNamespace(model="gemma-3-270m"))
    assert conf.base_model_name_or_path == "gemma-3-270m"  # packaged name: resolved again where loaded
    portable_base_name(model, SimpleNamespace(model="HuggingFaceTB/SmolLM2-135M-Instruct"))
    assert conf.base_model_name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    portable_base_name(model, SimpleNamespace(model=str(tmp_path)))
    assert conf.base_model_name_or_path == str(tmp_path)


@pytest.mark.slow
def test_full_checkpoint_is_a_transformers_folder_and_resumes_exactly(base_config, tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    common = dict(method="full", max_steps=4, save_every=2, lr=3e-3, lr_scheduler="constant")
    a = train(base_config(output_dir=str(tmp_path / "a"), **common))
    ckpt = _step_dirs(a)[0]
    assert (ckpt / "config.json").is_file() and (ckpt / "model.safetensors").is_file()
    assert not (ckpt / "trainable.safetensors").exists()  # the full weights are stored once
    AutoModelForCausalLM.from_pretrained(str(ckpt))  # plain transformers loads it
    b = train(base_config(output_dir=str(tmp_path / "b"), resume=str(ckpt), **common))
    assert max_diff(weights(a / "model"), weights(b / "model")) == 0.0


@pytest.mark.parametrize("method,flag", [("dora", "use_dora"), ("rslora", "use_rslora")])
def test_dora_and_rslora_are_methods(base_config, method, flag):
    from polyinstruct.train.methods import TRAINING_METHODS

    assert method in TRAINING_METHODS
    run = train(base_config(method=method, max_steps=1))
    cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert cfg[flag] is True and cfg["peft_type"] == "LORA"


def test_push_to_hub_offline_fails_with_one_line_after_saving(base_config, monkeypatch):
    from polyinstruct.errors import PolyinstructError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    conf = base_config(method="lora", max_steps=1, push_to_hub="someone/tiny-run")
    with pytest.raises(PolyinstructError) as e:
        train(conf)
    msg = str(e.value)
    assert "\n" not in msg and "push_to_hub" in msg and "someone/tiny-run" in msg and "HF_HUB_OFFLINE" in msg
    assert (Path(conf["output_dir"]) / "adapter" / "adapter_model.safetensors").is_file()  # the run is saved
