"""Broken and hostile model folders: every command that loads a model refuses them with one
``error:`` line naming the file and the field, before anything is allocated (issue 24)."""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from polyinstruct.cli import main as cli_main
from polyinstruct.errors import ConfigError
from polyinstruct.models.preflight import estimate_bytes, preflight


@pytest.fixture
def model(tmp_path, tiny_model_dir):
    dst = tmp_path / "model"
    shutil.copytree(tiny_model_dir, dst)
    return dst


def edit_json(path, **changes):
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def make_adapter(folder, base, peft_type="LORA"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": peft_type, "base_model_name_or_path": str(base), "r": 4, "lora_alpha": 8,
         "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}), encoding="utf-8")
    return folder


def one_error_line(capsys, argv) -> str:
    assert cli_main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def predict_argv(model, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"id": "1", "messages": [{"role": "user", "content": "hi"}]}) + "\n",
                    encoding="utf-8")
    return ["predict", str(model), "--data", str(data), "--out", str(tmp_path / "out.jsonl"), "--device", "cpu",
            "--max-new-tokens", "2"]


def test_auto_map_with_an_unknown_model_type(model, tmp_path, capsys):
    edit_json(model / "config.json", model_type="evil_llama", auto_map={"AutoModelForCausalLM": "modeling_evil.Evil"})
    line = one_error_line(capsys, predict_argv(model, tmp_path))
    assert f"{model / 'config.json'}:auto_map: this model needs its own Python code" in line
    edit_json(model / "config.json", auto_map=None)
    data = json.loads((model / "config.json").read_text())
    del data["auto_map"]
    (model / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="config.json:model_type: 'evil_llama' is not a model type"):
        preflight(str(model))


def test_auto_map_in_the_tokenizer_config(model, tmp_path, capsys):
    edit_json(model / "tokenizer_config.json", tokenizer_class="EvilTokenizer",
              auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]})
    line = one_error_line(capsys, predict_argv(model, tmp_path))
    assert f"{model / 'tokenizer_config.json'}:auto_map: this tokenizer needs its own Python code" in line


@pytest.mark.parametrize("base", ["evil", "/etc", "../.."])
def test_adapter_whose_base_is_not_a_usable_model(model, tmp_path, capsys, base):
    if base == "evil":
        edit_json(model / "config.json", model_type="evil_llama", auto_map={"AutoModelForCausalLM": "x.Y"})
        base = str(model)
    adapter = make_adapter(tmp_path / "adapter", base)
    line = one_error_line(capsys, predict_argv(adapter, tmp_path))
    if base in ("/etc", "../.."):
        assert f"{adapter / 'adapter_config.json'}:base_model_name_or_path: {base} is not a model folder" in line
    else:
        assert "config.json:auto_map" in line


def test_adapter_with_an_unknown_peft_type(model, tmp_path, capsys):
    adapter = make_adapter(tmp_path / "adapter", model, peft_type="EVIL")
    line = one_error_line(capsys, predict_argv(adapter, tmp_path))
    assert f"{adapter / 'adapter_config.json'}:peft_type: 'EVIL' is not an adapter type peft knows" in line
    # merge says it in its own words, also one line
    line = one_error_line(capsys, ["merge", str(adapter), str(tmp_path / "merged")])
    assert "peft_type" in line


def _corrupt(path, kind):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    if kind == "garbage header":
        path.write_bytes(raw[:8] + b"\xff" * n + raw[8 + n:])
    elif kind == "2^62 header length":
        path.write_bytes(struct.pack("<Q", 2**62) + raw[8:])
    elif kind == "huge tensor offsets":
        name = next(k for k in header if k != "__metadata__")
        header[name]["data_offsets"] = [2**60, 2**60 + 16]
        new = json.dumps(header).encode()
        new += b" " * (-len(new) % 8)
        path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])
    elif kind == "truncated":
        path.write_bytes(raw[:8 + n + (len(raw) - 8 - n) // 2])
    elif kind == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("kind", ["garbage header", "2^62 header length", "huge tensor offsets", "truncated", "empty"])
def test_corrupted_safetensors(model, tmp_path, capsys, kind):
    weights = model / "model.safetensors"
    assert weights.is_file()
    _corrupt(weights, kind)
    line = one_error_line(capsys, predict_argv(model, tmp_path))
    assert f"{weights}:header" in line


def test_too_big_for_memory_is_refused_from_the_config_without_allocating(model, tmp_path, capsys, monkeypatch):
    import transformers

    def never(*a, **k):
        raise AssertionError("the model was allocated")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", never)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_config", never)
    edit_json(model / "config.json", hidden_size=10**6, num_hidden_layers=10**4, intermediate_size=4 * 10**6)
    line = one_error_line(capsys, predict_argv(model, tmp_path))
    assert f"{model / 'config.json'}:hidden_size: this model needs about" in line
    assert "available on cpu" in line and "PiB" in line
    params, need = estimate_bytes(json.loads((model / "config.json").read_text()), "bfloat16")
    assert params > 10**16 and need == 2 * params


def test_every_loading_command_uses_the_preflight(model, tmp_path, capsys):
    _corrupt(model / "model.safetensors", "empty")
    for argv in (["serve", str(model), "--device", "cpu", "--port", "0"],
                 ["annotate", "serve", str(tmp_path / "db.sqlite"), "--model", f"m={model}", "--device", "cpu"]):
        if argv[0] == "annotate":
            from polyinstruct.annotate.store import Store

            Store(tmp_path / "db.sqlite").close()
        line = one_error_line(capsys, argv)
        assert "model.safetensors:header: empty file" in line, argv
    from polyinstruct.eval.models import load_hf

    with pytest.raises(ConfigError, match="model.safetensors:header: empty file"):
        load_hf(str(model), device="cpu")


def test_a_sound_model_and_adapter_pass(model, tmp_path):
    pf = preflight(str(model), device="cpu")
    assert pf.base == str(model) and pf.adapter is None and pf.config["model_type"] == "llama"
    adapter = make_adapter(tmp_path / "adapter", model)
    pf = preflight(str(adapter))
    assert pf.base == str(model) and pf.adapter == str(adapter)
