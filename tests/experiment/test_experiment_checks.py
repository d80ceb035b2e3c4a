"""An experiment checks its whole config before any cell runs, and never mixes cells made under
different settings (issue 10 items 6 and 7)."""

from __future__ import annotations

import errno
import json

import pytest
import torch
import yaml

from polyinstruct.cli import main
from polyinstruct.errors import ConfigError
from polyinstruct.experiment.runner import load_experiment_config, run_experiment


def _config(tiny_model_dir, out, **kw) -> dict:
    cfg = {
        "name": "mini", "output_dir": str(out), "model": str(tiny_model_dir), "template": "tulu",
        "method": "lora", "train_languages": ["en", "fr"], "eval_languages": ["en"], "arms": ["base", "en-only"],
        "examples_per_language": 4,
        "train": {"max_steps": 1, "lr": 1e-3, "global_batch_size": 4, "micro_batch_size": 4, "max_length": 1024,
                  "lora": {"target_modules": "all-linear"}},
        "eval": {"prompts_per_language": 1, "max_new_tokens": 2, "batch_size": 2},
        "seed": 0,
    }
    cfg.update(kw)
    return cfg


def _yaml(path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("section,expected", [
    ({"judge": {"modle": "gpt-4o-mini"}}, ":judge.modle: unknown field Did you mean: mode, model?"),
    ({"judge": {"model": "m", "mode": "pairwize"}}, ":judge.mode:"),
    ({"train": {"learning_rate": 1e-4}}, ":train.learning_rate: unknown field Did you mean: lr?"),
    ({"train": {"global_batch_size": 10, "micro_batch_size": 4}}, ":train: global_batch_size (10) must be"),
    ({"train": {"method": "full"}}, ":train.method: set by the experiment's top-level method"),
    ({"lr": 1e-3}, ":lr: unknown field Did you mean: train.lr? (training fields go under train:)"),
    ({"lid": "fasttext-lit"}, ":lid: unknown language identifier 'fasttext-lit'. Did you mean: fasttext-lite"),
    ({"train_languages": ["en", "../../x"]}, ":train_languages: '../../x' is not a language code"),
    ({"arms": ["mono-../x"]}, ":arms: '../x' is not a language code"),
    ({"data": {"en/../..": "d.jsonl"}}, ":data: 'en/../..' is not a language code"),
])
def test_config_errors_stop_the_experiment_before_any_cell(section, expected, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "exp"
    path = _yaml(tmp_path / "exp.yaml", _config(tiny_model_dir, out, **section))
    assert main(["experiment", path, "--no-report"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}{expected}"), err
    assert not (out / "cells").exists() and not (tmp_path / "x").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_gpu_only_training_settings_fail_before_the_base_cell(tiny_model_dir, tmp_path):
    out = tmp_path / "exp"
    cfg = _config(tiny_model_dir, out)
    cfg["train"]["mixed_precision"] = "fp16"
    with pytest.raises(ConfigError, match="train.mixed_precision: fp16 mixed precision needs a CUDA GPU"):
        run_experiment(_yaml(tmp_path / "exp.yaml", cfg), report=False)
    assert not (out / "cells").exists()


def test_relative_paths_resolve_against_the_yaml_folder(tiny_model_dir, tmp_path, monkeypatch):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "fr.jsonl").write_text(json.dumps(
        {"id": "p1", "messages": [{"role": "user", "content": "Bonjour ?"}]}) + "\n", encoding="utf-8")
    path = _yaml(folder / "exp.yaml", _config(tiny_model_dir, "out", eval_data={"fr": "fr.jsonl"}))
    monkeypatch.chdir(tmp_path)
    cfg = load_experiment_config(path)
    assert cfg.eval_data == {"fr": str(folder / "fr.jsonl")} and cfg.output_dir == "out"


@pytest.mark.slow
def test_rerun_with_changed_settings_is_refused_per_cell_and_resume_never_starts_over(tiny_model_dir, tmp_path,
                                                                                      capsys):
    out = tmp_path / "exp"
    path = _yaml(tmp_path / "exp.yaml", _config(tiny_model_dir, out))
    run_experiment(path, report=False)
    done = {p.parent.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*/done.json")}
    assert set(done) == {"base", "en-only"} and (out / "cells" / "en-only" / "fingerprint.json").is_file()
    recorded = (out / "experiment.yaml").read_text()

    # a training change concerns the trained cell only; an evaluation change every cell
    rc = main(["experiment", path, "train.lr=0.5", "eval.max_new_tokens=3", "--no-report"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "cell en-only: train.lr: 0.001 -> 0.5" in err
    assert "cell base: eval.max_new_tokens: 2 -> 3" in err and "cell base: train" not in err
    assert "output_dir" in err and "resume=never" in err
    assert (out / "experiment.yaml").read_text() == recorded  # a refused run writes nothing

    # folders from before fingerprints are checked through the experiment.yaml they record
    for fp in [out / "fingerprint.json", *(out / "cells").glob("*/fingerprint.json")]:
        fp.unlink()
    with pytest.raises(ConfigError, match="cell en-only: train.lr: 0.001 -> 0.5"):
        run_experiment(path, ["train.lr=0.5"], report=False)
    run_experiment(path, report=False)  # unchanged: passes, and the cells get their fingerprints
    assert (out / "cells" / "base" / "fingerprint.json").is_file()

    # settings that change no result pass, and finished cells are kept
    run_experiment(path, ["eval.batch_size=1"], report=False)
    assert {p.parent.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*/done.json")} == done

    # a new arm is a new cell, not a conflict
    run_experiment(path, ["arms=[base,en-only,mono-fr]"], report=False)
    assert (out / "cells" / "mono-fr" / "done.json").is_file()

    # the documented way out
    run_experiment(path, ["train.lr=0.5", "resume=never"], report=False)
    fp = json.loads((out / "cells" / "en-only" / "fingerprint.json").read_text())
    assert fp["train"]["lr"] == 0.5 and not (out / "cells" / "mono-fr").exists()


def test_output_dir_that_is_a_file_and_a_full_disk_are_one_line_errors(tiny_model_dir, tmp_path, capsys,
                                                                      monkeypatch):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    path = _yaml(tmp_path / "exp.yaml", _config(tiny_model_dir, blocker, arms=["base"]))
    assert main(["experiment", path, "--no-report"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {path}:output_dir: {blocker} is a file, not a folder; choose another output_dir\n"

    import polyinstruct.experiment.checks as checks

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "exp" / "fingerprint.json"))

    monkeypatch.setattr(checks, "write_fingerprints", full)
    path = _yaml(tmp_path / "exp2.yaml", _config(tiny_model_dir, tmp_path / "exp", arms=["base"]))
    assert main(["experiment", path, "--no-report"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot write ") and "no space left on device" in err


def test_cell_fingerprint_holds_the_generation_precision_and_in_bf16_the_batch_size():
    from polyinstruct.experiment.checks import cell_fingerprint, differences
    from polyinstruct.experiment.config import ExperimentConfig

    def diff(a, b):
        a, b = ExperimentConfig(model="m", arms=["base"], eval=a), ExperimentConfig(model="m", arms=["base"], eval=b)
        return differences(cell_fingerprint(a, a.cells()[0]), cell_fingerprint(b, b.cells()[0]))

    assert sorted(diff({"dtype": "float32"}, {"dtype": "bfloat16"})) == ["eval.batch_size: null -> 16", "eval.dtype: null -> bfloat16"]
    # float32: the batch size changes no answer; bf16: it changes some greedy answers (docs/experiments.md)
    assert diff({"batch_size": 16}, {"batch_size": 32}) == []
    assert diff({"batch_size": 16, "dtype": "bfloat16"}, {"batch_size": 32, "dtype": "bfloat16"}) == [
        "eval.batch_size: 16 -> 32"]


def test_cell_fingerprint_counts_every_setting_but_the_harmless_ones():
    from polyinstruct.experiment.checks import cell_fingerprint, differences
    from polyinstruct.experiment.config import ExperimentConfig

    base = {"model": "m", "arms": ["base", "multi"]}

    def diff(**changes):
        a, b = ExperimentConfig(**base), ExperimentConfig(**{**base, **changes})
        return {c.name: differences(cell_fingerprint(a, c), cell_fingerprint(b, c)) for c in a.cells()}

    assert diff(name="other", output_dir="elsewhere", eval={"batch_size": 1}) == {"base": [], "multi": []}
    assert diff(judge={"model": "j", "concurrency": 2}) == diff(judge={"model": "j", "timeout": 5})
    changed = diff(train={"lr": 0.5}, eval={"max_new_tokens": 3})
    assert changed["base"] == ["eval.max_new_tokens: 128 -> 3"]
    assert "train.lr: 0.0002 -> 0.5" in changed["multi"]
    # a setting the fingerprint does not place by name still counts once it is set
    extra = [f for f, i in ExperimentConfig.model_fields["eval"].annotation.model_fields.items()
             if f not in ("prompts_per_language", "max_new_tokens", "decoding", "batch_size", "dtype")]
    if "benchmarks" in extra:
        assert diff(eval={"benchmarks": {"tasks": ["arc_easy"]}})["base"]
