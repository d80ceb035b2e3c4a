"""The experiment, quickstart, report and models commands as a user types them."""

from __future__ import annotations

import yaml

from polyinstruct.cli import main
from polyinstruct.experiment.runner import load_experiment_config
from tests.report.test_report import _fake_experiment


def _write(tmp_path, cfg: dict):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_unknown_arm_is_an_error_naming_file_field_and_the_near_name(tmp_path, capsys):
    path = _write(tmp_path, {"model": "m", "arms": ["base", "multidown"]})
    assert main(["experiment", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "arms" in err and "Did you mean: multi-down" in err


def test_misspelled_nested_field_names_file_and_dotted_field(tmp_path, capsys):
    path = _write(tmp_path, {"model": "m", "eval": {"max_new_token": 8}})
    assert main(["experiment", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:eval.max_new_token" in err and "max_new_tokens" in err


def test_quickstart_print_config_is_the_valid_built_in_config(capsys, tmp_path):
    assert main(["quickstart", "--print-config"]) == 0
    text = capsys.readouterr().out
    cfg = load_experiment_config(_write(tmp_path, yaml.safe_load(text)))
    assert cfg.arms == ["base", "en-only", "multi", "multi-down"] and "bn" in cfg.eval_languages


def test_report_command_prints_the_report_path(tmp_path, capsys):
    root = _fake_experiment(tmp_path)
    assert main(["report", str(root)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"report: {root / 'report' / 'report.html'}"
    assert (root / "report" / "report.html").exists()


def test_models_list_and_unknown_prepare(capsys, tmp_path):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "gemma-3-270m" in out and "smollm2-135m-instruct" in out
    assert main(["models", "prepare", "gemma3-270m", "--cache-dir", str(tmp_path)]) == 1
    assert "Did you mean: gemma-3-270m" in capsys.readouterr().err
