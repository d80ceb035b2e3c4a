"""A run directory is reused only under the same fingerprint; config errors come before any work.

Issue 10 items 6 and 7: a finished run with a changed config was returned as finished, an
interrupted one resumed under new settings; ``validate`` passed configs ``train`` rejects;
relative paths in a YAML file resolved against the working directory; Hugging Face names got
no hint; an ``output_dir`` that is a file or a full disk ended in a traceback.
"""

from __future__ import annotations

import errno
import json
import re
import shutil

import pytest
import torch
import yaml

from polyinstruct.cli import main
from polyinstruct.errors import ConfigError
from polyinstruct.train import train
from polyinstruct.train.config import load_train_config
from tests.train.conftest import QA, write_conversations


def _yaml(path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def _cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# ---- item 6: a changed config never passes for a finished (or interrupted) run ----

def test_finished_run_with_changed_config_is_refused_naming_the_fields(base_config, tmp_path, capsys):
    cfg_path = _yaml(tmp_path / "train.yaml", base_config(max_steps=1))
    assert _cli(capsys, "train", cfg_path, "--no-progress")[0] == 0
    run = tmp_path / "run"
    stamp = (run / "budget.json").stat().st_mtime_ns

    rc, out, err = _cli(capsys, "train", cfg_path, "data=[missing.jsonl]", "lr=5")
    assert rc == 1 and "already finished" not in out + err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "lr: 0.001 -> 5" in err and "missing.jsonl" in err and "data:" in err
    assert "output_dir" in err and "resume=never" in err  # the ways out
    assert (run / "budget.json").stat().st_mtime_ns == stamp  # nothing touched
    rc, out, err = _cli(capsys, "validate", cfg_path, "lr=5")  # validate says what train would say
    assert rc == 1 and "lr: 0.001 -> 5.0" in err
    rc, out, err = _cli(capsys, "validate", cfg_path)
    assert rc == 0 and json.loads(out)["output_dir_state"].startswith("finished")
    assert (run / "fingerprint.json").is_file()

    # settings that do not change the weights never block the reuse
    rc, out, err = _cli(capsys, "train", cfg_path, "log_every=5", "save_every=3", "report_to=[jsonl]",
                        "eval_batch_size=2", "--no-progress")
    assert rc == 0 and (run / "budget.json").stat().st_mtime_ns == stamp


def test_changed_data_content_under_the_same_name_is_a_mismatch(base_config, tmp_path):
    data = write_conversations(tmp_path / "d.jsonl")
    run = train(base_config(max_steps=1, data=[str(data)]))
    write_conversations(data, QA[:-1])  # same file name, one conversation fewer
    with pytest.raises(ConfigError, match=r"data: .*d\.jsonl") as e:
        train(base_config(max_steps=1, data=[str(data)]))
    assert "resume=never" in str(e.value)
    again = train(base_config(max_steps=1, data=[str(data)], resume="never"))  # the way out works
    assert again == run and json.loads((run / "fingerprint.json").read_text())["data"][0]["sha256"]


def test_interrupted_run_is_not_resumed_under_other_settings(base_config):
    run = train(base_config(max_steps=2, save_every=1))
    (run / "budget.json").unlink()
    shutil.rmtree(run / "adapter")  # now an interrupted run with checkpoints
    with pytest.raises(ConfigError, match="interrupted run") as e:
        train(base_config(max_steps=2, save_every=1, lora={"r": 4}))
    assert "lora" in str(e.value)


def test_run_dir_from_before_fingerprints_is_checked_through_its_config(base_config):
    run = train(base_config(max_steps=1))
    (run / "fingerprint.json").unlink()  # as written by earlier versions
    with pytest.raises(ConfigError, match=r"seed: 0 -> 3"):
        train(base_config(max_steps=1, seed=3))
    assert train(base_config(max_steps=1)) == run


# ---- item 7: config errors before any work ----

@pytest.mark.parametrize("habit,ours", [
    ("learning_rate", "lr"), ("num_train_epochs", "epochs"), ("per_device_train_batch_size", "micro_batch_size"),
    ("gradient_accumulation_steps", "global_batch_size"), ("bf16", "mixed_precision"),
    ("max_seq_length", "max_length"), ("lr_scheduler_type", "lr_scheduler"), ("save_total_limit", "keep_last"),
])
def test_hugging_face_names_suggest_the_polyinstruct_field(habit, ours, tmp_path):
    path = _yaml(tmp_path / "t.yaml", {"model": "m", "data": ["d"], "output_dir": "o", habit: 1})
    with pytest.raises(ConfigError) as e:
        load_train_config(path)
    assert e.value.field == habit and f"Did you mean: {ours}?" in str(e.value)
    assert str(e.value).startswith(f"{path}:{habit}: unknown field")


def test_train_help_lists_every_field_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for line in ("lr = 0.0002", "epochs = 3", "global_batch_size = 16", "micro_batch_size = 4", "lora.r = 8",
                 "max_length = 2048", "mixed_precision = no", "model = (required)", "resume = auto"):
        assert line in out, line


def _validate_error(capsys, cfg_path, *overrides) -> str:
    rc, out, err = _cli(capsys, "validate", cfg_path, *overrides)
    assert rc == 1 and err.startswith("error: ") and "Traceback" not in err, (rc, out, err)
    return err


@pytest.mark.parametrize("overrides,expected", [
    (["resume=runs/nowhere/checkpoints/step-3"], "resume: runs/nowhere/checkpoints/step-3 is not a checkpoint"),
    (["attn_implementation=flash_attn"], "attn_implementation: unknown attn_implementation 'flash_attn'. "
                                          "Did you mean: "),
    (["use_liger=true"], "use_liger: needs liger-kernel"),
    (["report_to=[jsonl,wandb]"], "report_to: needs wandb"),
])
def test_validate_rejects_what_train_would_reject(overrides, expected, base_config, tmp_path, capsys):
    import importlib.util

    if "liger" in expected and importlib.util.find_spec("liger_kernel"):
        pytest.skip("liger-kernel is installed here")
    if "wandb" in expected and importlib.util.find_spec("wandb"):
        pytest.skip("wandb is installed here")
    cfg_path = _yaml(tmp_path / "t.yaml", base_config())
    assert expected in _validate_error(capsys, cfg_path, *overrides)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only errors")
@pytest.mark.parametrize("overrides,field", [(["mixed_precision=fp16"], "mixed_precision"),
                                             (["load_in_4bit=true"], "load_in_4bit"),
                                             (["method=qlora"], "method")])
def test_validate_rejects_gpu_only_settings_on_cpu(overrides, field, base_config, tmp_path, capsys):
    cfg_path = _yaml(tmp_path / "t.yaml", base_config())
    err = _validate_error(capsys, cfg_path, *overrides)
    assert f"t.yaml:{field}:" in err and "CUDA" in err


def test_relative_paths_in_a_yaml_resolve_against_its_folder(base_config, tiny_model_dir, tmp_path, monkeypatch,
                                                             capsys):
    folder = tmp_path / "project"
    folder.mkdir()
    write_conversations(folder / "d.jsonl")
    cfg_path = _yaml(folder / "cfg.yaml", base_config(data=["d.jsonl"], validation_data={"held": "./d.jsonl"},
                                                      output_dir="out"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_train_config(cfg_path)
    assert cfg.data == [str(folder / "d.jsonl")] and cfg.validation_data == {"held": str(folder / "d.jsonl")}
    assert cfg.output_dir == "out"  # outputs follow the working directory
    # command-line values are relative to the working directory
    assert load_train_config(cfg_path, ["data=[x.jsonl]"]).data == ["x.jsonl"]
    rc, out, err = _cli(capsys, "validate", cfg_path)
    assert rc == 0, err
    assert json.loads(out)["train_examples"] == len(QA)
    # a missing file is reported as a file, with the resolved path, not as an unknown dataset
    bad = _yaml(folder / "bad.yaml", base_config(data=["nope.jsonl"]))
    rc, out, err = _cli(capsys, "validate", bad)
    assert rc == 1 and str(folder / "nope.jsonl") in err


def test_output_dir_that_is_a_file_is_one_clear_line(base_config, tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    cfg_path = _yaml(tmp_path / "t.yaml", base_config(output_dir=str(blocker / "run")))
    for command in ("validate", "train"):
        rc, out, err = _cli(capsys, command, cfg_path)
        assert rc == 1 and err.count("\n") == 1, err
        assert f"output_dir: {blocker} is a file, not a folder" in err


def test_full_disk_is_one_clear_line(base_config, tmp_path, capsys, monkeypatch):
    import polyinstruct.train.run as run_mod

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "config.yaml"))

    monkeypatch.setattr(run_mod, "_write_run_files", full)
    cfg_path = _yaml(tmp_path / "t.yaml", base_config(max_steps=1))
    rc, out, err = _cli(capsys, "train", cfg_path, "--no-progress")
    last = err.strip().splitlines()[-1]  # (loading progress bars come before it)
    assert rc == 1 and "Traceback" not in err and sum(x.startswith("error:") for x in err.splitlines()) == 1
    assert last.startswith("error: cannot write ") and "config.yaml: no space left on device" in last


def test_training_guide_quotes_the_real_messages(base_config, tmp_path, monkeypatch):
    """docs/training.md quotes the learning_rate error and the changed-run error verbatim."""
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text(encoding="utf-8")
    quoted = re.search(r"`(train\.yaml:learning_rate: [^`]+)`", guide).group(1)
    monkeypatch.chdir(tmp_path)
    _yaml(tmp_path / "train.yaml", {"model": "m", "data": ["d"], "output_dir": "o", "learning_rate": 1e-4})
    with pytest.raises(ConfigError) as e:
        load_train_config("train.yaml")
    assert str(e.value) == quoted
    for line in ("To keep it, set a new output_dir; to train here again from scratch (deleting it), "
                 "add resume=never.", "holds a finished run trained with different settings:", "  lr: 0.001 -> 5.0"):
        assert line in guide
