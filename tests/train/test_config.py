"""Config schema: presets, overrides, and errors that name the file and field."""

from __future__ import annotations

import pytest
import yaml

from polyinstruct.cli import main
from polyinstruct.errors import ConfigError
from polyinstruct.train.config import load_train_config


def _write(tmp_path, data, name: str = "train.yaml") -> str:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(p)


def test_preset_supplies_defaults_and_explicit_fields_win(tmp_path):
    base = {"model": "m", "data": ["d.jsonl"], "output_dir": "out", "preset": "seed1_lora"}
    cfg = load_train_config(_write(tmp_path, {**base, "validation_split": 0.05}), ["lr=1e-4", "lora.r=16"])
    assert (cfg.method, cfg.global_batch_size, cfg.epochs, cfg.select_best) == ("lora", 128, 5, True)
    assert (cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules) == (16, 0.05, "qkv")
    assert cfg.lr == 1e-4 and cfg.lora.r == 16  # the command line beats the preset
    fft = load_train_config({**base, "preset": "alpaca_fft"})
    assert (fft.method, fft.epochs, fft.lr, fft.warmup_ratio, fft.global_batch_size) == ("full", 3, 2e-5, 0.03, 256)
    tulu = load_train_config({**base, "preset": "tulu", "epochs": 1})
    assert (tulu.epochs, tulu.lr, tulu.weight_decay, tulu.lr_scheduler, tulu.max_length) == (1, 2e-5, 0.0, "linear", 2048)


def test_unknown_field_names_file_field_and_suggests(tmp_path):
    path = _write(tmp_path, {"model": "m", "data": ["d"], "output_dir": "o", "learning_rate": 1e-4})
    with pytest.raises(ConfigError) as e:
        load_train_config(path)
    assert e.value.file == path and e.value.field == "learning_rate"
    with pytest.raises(ConfigError, match="Did you mean: lora") as e:
        load_train_config({"model": "m", "data": ["d"], "output_dir": "o", "method": "lorra"})
    assert e.value.field == "method"


def test_global_batch_must_split_into_micro_batches(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_train_config(_write(tmp_path, {"model": "m", "data": ["d"], "output_dir": "o",
                                            "global_batch_size": 10, "micro_batch_size": 4}))
    assert "multiple of micro_batch_size" in str(e.value)


def test_select_best_needs_validation_data():
    with pytest.raises(ConfigError, match="select_best needs"):
        load_train_config({"model": "m", "data": ["d"], "output_dir": "o", "select_best": True})


def test_quantized_loading_on_cpu_is_a_clear_error(base_config):
    import torch

    from polyinstruct.train.modeling import _quantization_config

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    cfg = load_train_config(base_config(method="qlora"))
    with pytest.raises(ConfigError, match="CUDA GPU"):
        _quantization_config(cfg)


def test_validate_command_checks_data_and_model(base_config, tmp_path, capsys):
    import json

    path = _write(tmp_path, base_config())
    assert main(["validate", path, "global_batch_size=16"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_examples"] == 16 and summary["steps_per_epoch"] == 1 and summary["grad_accum"] == 4
    bad = _write(tmp_path, base_config(lora={"target_modules": ["nope_proj"]}), "bad.yaml")
    assert main(["validate", bad]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:lora.target_modules" in err and "nope_proj" in err and "q_proj" in err
    assert main(["validate", path, "data=[missing.jsonl]"]) == 1
    assert "missing.jsonl" in capsys.readouterr().err


def test_shipped_example_configs_are_valid():
    import json
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "examples" / "train"
    configs = [p for p in folder.glob("*.yaml") if not p.name.startswith("accelerate_")]
    assert len(configs) >= 5
    for p in configs:
        load_train_config(p)  # raises ConfigError naming the file and field
    for p in folder.glob("ds_zero*.json"):
        assert json.loads(p.read_text())["zero_optimization"]["stage"] in (2, 3)
    for p in folder.glob("accelerate_*.yaml"):
        acc = yaml.safe_load(p.read_text())
        if acc["distributed_type"] == "DEEPSPEED":
            assert (folder.parents[1] / acc["deepspeed_config"]["deepspeed_config_file"]).exists()


def test_packing_is_on_by_default_where_the_method_can_pack():
    from polyinstruct.train.config import TrainConfig

    base = {"model": "m", "data": ["d.jsonl"], "output_dir": "o"}
    assert TrainConfig.model_validate(base).packing is True
    assert TrainConfig.model_validate({**base, "method": "full"}).dump()["packing"] is True
    assert TrainConfig.model_validate({**base, "packing": False}).packing is False
    # prompt-learning methods prepend virtual tokens per sequence: auto leaves them padded ...
    assert TrainConfig.model_validate({**base, "method": "prompt_tuning"}).packing is False
    # ... and asking for packing explicitly is an error
    with pytest.raises(ValueError, match="packing is not supported with prompt_tuning"):
        TrainConfig.model_validate({**base, "method": "prompt_tuning", "packing": True})


def test_a_bad_packing_value_names_the_file_and_field(tmp_path):
    bad = tmp_path / "cfg.yaml"
    bad.write_text("model: m\ndata: [a.jsonl]\noutput_dir: o\npacking: maybe\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cfg\.yaml:packing: must be true, false or auto, got 'maybe'"):
        load_train_config(str(bad))
    ok = tmp_path / "ok.yaml"
    ok.write_text("model: m\ndata: [a.jsonl]\noutput_dir: o\npacking: off\n", encoding="utf-8")
    assert load_train_config(str(ok)).packing is False  # the booleans pydantic reads elsewhere
