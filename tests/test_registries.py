"""Registries fail loudly and load lazily; hand-kept lists are derived from them."""

from __future__ import annotations

import pytest

from polyinstruct import cli
from polyinstruct.registry import Registry


def test_a_command_module_that_does_not_import_fails_the_cli_loudly(monkeypatch):
    """A packaging mistake must not become a missing command (it used to be skipped)."""
    # lang exists but has no commands module: the old loop skipped exactly this case
    monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + ["polyinstruct.lang.commands"])
    with pytest.raises(ModuleNotFoundError, match="polyinstruct.lang.commands"):
        cli.build_parser()


def test_group_extensions_reach_their_groups():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    data_actions = next(a for a in sub.choices["data"]._actions if a.dest == "data_command")
    analyze_actions = next(a for a in sub.choices["analyze"]._actions if a.dest == "analyze_command")
    assert "translate" in data_actions.choices and "refscore" in analyze_actions.choices


def test_an_eval_suite_module_that_does_not_import_fails_loudly(monkeypatch):
    from polyinstruct.eval import tasks

    monkeypatch.setattr(tasks, "SUITE_MODULES", tasks.SUITE_MODULES + ["polyinstruct.eval.suites.nosuchsuite"])
    monkeypatch.setattr(tasks, "_loaded", False)
    with pytest.raises(ModuleNotFoundError, match="nosuchsuite"):
        tasks.load_suites()
    assert tasks._loaded is False  # the next call tries again (and fails again) instead of going quiet


def test_lazy_entries_import_on_first_use_and_fail_loudly():
    reg: Registry = Registry("thing")
    reg.register_lazy("json", "json:dumps")
    reg.register_lazy("broken", "polyinstruct.nosuchmodule:thing")
    reg.register_lazy("noattr", "json:nosuchname")
    assert reg.names() == ["broken", "json", "noattr"]  # listing imports nothing
    import json

    assert reg.get("json") is json.dumps
    with pytest.raises(ModuleNotFoundError):
        reg.get("broken")
    with pytest.raises(ImportError, match="nosuchname"):
        reg.get("noattr")
    with pytest.raises(ValueError, match="module:object"):
        reg.register_lazy("bad", "no_colon")


def test_executor_names_come_from_the_lazy_registry():
    from polyinstruct.experiment.config import EXECUTORS, ExecutorSettings
    from polyinstruct.experiment.executors import LocalExecutor

    assert EXECUTORS.names() == ["local", "ray", "slurm"]
    assert EXECUTORS.get("local") is LocalExecutor
    with pytest.raises(ValueError, match="Did you mean: slurm"):
        ExecutorSettings(name="slurn")


def test_translate_engines_in_the_help_are_the_registry(monkeypatch, capsys):
    from polyinstruct.translate.engines import ENGINES

    monkeypatch.setitem(ENGINES._items, "throwaway", lambda model, **kw: None)
    with pytest.raises(SystemExit):
        cli.main(["data", "translate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "one of " + ", ".join(ENGINES.names()) in out and "throwaway" in out


def test_training_method_lists_derive_from_the_method_records():
    from polyinstruct.train.config import METHODS
    from polyinstruct.train.methods import TRAINING_METHODS, get_method, mergeable_peft_types

    assert set(METHODS) == set(TRAINING_METHODS.names())
    assert {m for m in METHODS if get_method(m).family == "lora"} == {"lora", "qlora", "dora", "rslora", "adalora"}
    assert {m for m in METHODS if not get_method(m).packable} == {"prefix_tuning", "prompt_tuning", "p_tuning"}
    assert mergeable_peft_types() == {"LORA", "ADALORA", "IA3", "LOHA", "LOKR", "OFT", "BOFT"}
