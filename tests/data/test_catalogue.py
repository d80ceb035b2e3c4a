"""The catalogue: built-in entries, user files, did-you-mean, loading by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyinstruct.cli import main
from polyinstruct.data import load_dataset
from polyinstruct.data.catalogue import load_catalogue
from polyinstruct.errors import ConfigError, DataError, UnknownNameError

FIX = Path(__file__).parent / "fixtures"


def test_builtin_catalogue_has_public_and_embedded_sets():
    cat = load_catalogue()
    dolly = cat.get("dolly")
    assert (dolly.hub, dolly.format, dolly.generation, dolly.license) == (
        "databricks/databricks-dolly-15k", "dolly", "human", "CC-BY-SA-3.0")
    for name in ("polyinstruct-instruct-fr", "polyinstruct-eval-bn", "polyinstruct-parallel-en-zh"):
        assert name in cat


def test_unknown_name_suggests_nearest():
    with pytest.raises(UnknownNameError, match="Did you mean: polyinstruct-eval-bn"):
        load_catalogue().get("polyinstruct-eval-bm")


def test_user_catalogue_file_adds_and_overrides(tmp_path, monkeypatch):
    user = tmp_path / "mine.yaml"
    user.write_text(f"""datasets:
  my-dolly:
    path: {FIX / 'dolly.jsonl'}
    languages: [en]
    task_type: multi-task
    generation: human
    license: CC-BY-SA-3.0
    size: 2
  dolly:
    path: rel/dolly.jsonl
    format: dolly
""", encoding="utf-8")
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "dolly.jsonl").write_text((FIX / "dolly.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    cat = load_catalogue([user])
    recs = list(load_dataset("my-dolly", catalogue=cat))
    assert [r.source for r in recs] == ["my-dolly", "my-dolly"]
    assert [r.language for r in recs] == ["en", "en"]  # the single catalogue language fills records
    assert cat.get("dolly").path == str(tmp_path / "rel" / "dolly.jsonl")  # relative to the YAML file
    assert len(list(cat.open("dolly"))) == 2
    monkeypatch.setenv("POLYINSTRUCT_CATALOGUE", str(tmp_path))
    assert "my-dolly" in load_catalogue()


def test_bad_catalogue_fields_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets:\n  x:\n    path: a.jsonl\n    licence: MIT\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml:x.licence: unknown field Did you mean: license"):
        load_catalogue([bad])
    bad.write_text("datasets:\n  x:\n    path: a.jsonl\n    hub: a/b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="exactly one of"):
        load_catalogue([bad])
    bad.write_text("datasets:\n  x:\n    path: a.jsonl\n    generation: crowd\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="generation must be one of"):
        load_catalogue([bad])


def test_hub_entry_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="offline.*path:"):
        load_dataset("alpaca")


def test_combined_entry_concatenates(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(f"datasets:\n  a: {{path: {FIX / 'flan.jsonl'}}}\n  b: {{path: {FIX / 'dolly.jsonl'}}}\n"
                 "  ab: {combine: [a, b]}\n", encoding="utf-8")
    recs = list(load_dataset("ab", catalogue=load_catalogue([f])))
    assert [r.source for r in recs] == ["a", "a", "b", "b"]


def test_data_list_cli_prints_the_table(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "task type" in out and "generation" in out
    assert any(line.startswith("dolly ") and "CC-BY-SA-3.0" in line for line in out.splitlines())
    assert main(["data", "list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert {"name": "polyinstruct-eval-no"}.items() <= next(e for e in entries if e["name"] == "polyinstruct-eval-no").items()
