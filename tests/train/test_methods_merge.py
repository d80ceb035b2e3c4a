"""Every PEFT method trains and round-trips through plain peft; merge keeps the logits."""

from __future__ import annotations

import json

import pytest
import torch

from polyinstruct.cli import main
from polyinstruct.train import merge_adapter, train
from tests.train.helpers import weights

PEFT_METHODS = ["lora", "adalora", "ia3", "prefix_tuning", "prompt_tuning", "p_tuning"]


def _ids(tokenizer):
    return torch.tensor([tokenizer("<|user|>\nHello!\n<|assistant|>\nHi, how")["input_ids"]])


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_peft_method_trains_saves_and_loads_with_plain_peft(method, base_config, tiny_model_dir):
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = train(base_config(method=method, max_steps=2, lr=5e-2, lora={"dropout": 0.0}, prompt={"num_virtual_tokens": 4}))
    adapter = run / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    conf = PeftConfig.from_pretrained(str(adapter))
    assert conf.peft_type.value.lower().replace("_", "") == {"p_tuning": "ptuning", "prefix_tuning": "prefixtuning",
                                                              "prompt_tuning": "prompttuning"}.get(method, method)
    tok = AutoTokenizer.from_pretrained(str(adapter))
    base = AutoModelForCausalLM.from_pretrained(conf.base_model_name_or_path)
    ids = _ids(tok)
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits[0, -1]
        tuned = PeftModel.from_pretrained(base, str(adapter)).eval()
        tuned_logits = tuned(input_ids=ids).logits[0, -1]
    assert torch.isfinite(tuned_logits).all()
    assert float((tuned_logits - base_logits).abs().max()) > 1e-4  # the trained adapter changes the model
    assert json.loads((run / "budget.json").read_text())["steps"] == 2


@pytest.mark.parametrize("method", ["qlora", "lora8bit"])
def test_quantized_methods_on_gpu(method, base_config):
    if not torch.cuda.is_available():
        pytest.skip("4-bit/8-bit loading needs a CUDA GPU (bitsandbytes)")
    pytest.importorskip("bitsandbytes")
    kw = {"method": "qlora"} if method == "qlora" else {"method": "lora", "load_in_8bit": True}
    run = train(base_config(max_steps=2, **kw))
    assert (run / "adapter" / "adapter_model.safetensors").exists()


def test_merged_model_gives_the_same_logits_as_base_plus_adapter(base_config, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = train(base_config(method="lora", max_steps=3, lr=5e-2, lora={"target_modules": "all-linear"}))
    assert max(float(v.abs().max()) for k, v in weights(run / "adapter").items() if "lora_B" in k) > 0
    out = merge_adapter(run, tmp_path / "merged")
    tok = AutoTokenizer.from_pretrained(str(out))
    ids = _ids(tok)
    cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(cfg["base_model_name_or_path"])
        ref = PeftModel.from_pretrained(base, str(run / "adapter")).eval()(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()(input_ids=ids).logits
    assert float((ref - merged).abs().max()) < 1e-5
    assert (out / "template.yaml").exists()
    # the CLI does the same
    assert main(["merge", str(run), str(tmp_path / "merged-cli")]) == 0
    assert (tmp_path / "merged-cli" / "model.safetensors").exists()


def test_prompt_learning_adapters_refuse_to_merge(base_config, tmp_path):
    from polyinstruct.errors import ConfigError

    run = train(base_config(method="prompt_tuning", max_steps=1, prompt={"num_virtual_tokens": 2}))
    with pytest.raises(ConfigError, match="cannot be merged"):
        merge_adapter(run, tmp_path / "m")


def test_added_tokens_resize_embeddings_and_survive_save_and_merge(base_config, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = train(base_config(method="lora", max_steps=1, add_special_tokens=["<|tool|>"]))
    tok = AutoTokenizer.from_pretrained(str(run / "adapter"))
    assert "<|tool|>" in tok.get_vocab() and len(tok.encode("<|tool|>", add_special_tokens=False)) == 1
    merged = AutoModelForCausalLM.from_pretrained(str(merge_adapter(run, tmp_path / "merged")))
    assert merged.get_input_embeddings().weight.shape[0] == len(tok)
    full = train(base_config(method="full", max_steps=1, add_special_tokens=["<|tool|>"],
                             output_dir=str(tmp_path / "full")))
    model = AutoModelForCausalLM.from_pretrained(str(full / "model"))
    assert model.get_input_embeddings().weight.shape[0] == len(AutoTokenizer.from_pretrained(str(full / "model")))
