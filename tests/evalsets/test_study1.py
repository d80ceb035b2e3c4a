"""Study 1's published test set: schema, local folder, GitHub cache, experiment selection."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest

from polyinstruct.errors import ConfigError, DataError
from polyinstruct.evalsets import study1
from polyinstruct.evalsets.study1 import load_study1_prompts, resolve_eval_set

FIXTURE = Path(__file__).parent / "fixtures" / "study1"


def test_reads_the_published_schema_from_a_folder():
    convs = load_study1_prompts("no", FIXTURE)
    assert [c.id for c in convs][:1] == ["0b0f7a52-1c1e-4a57-9a43-5f2a1d6c0e01"] and len(convs) == 3
    c = convs[1]
    assert (c.language, c.source, c.license) == ("no", "study1-test", "CC-BY-NC-4.0")
    assert [(m.role, m.content) for m in c.messages] == [
        ("user", "Hvordan hindrer jeg at brillene dugger når jeg bruker munnbind?")]
    assert c.meta == {"study1_file": "test_no.jsonl", "study1_line": 2}


@pytest.mark.parametrize("line,field", [('{"id": "x"}', "prompt"), ('{"id": "", "prompt": "Hei"}', "id"),
                                        ('{"id": 3, "prompt": "Hei"}', "id")])
def test_bad_lines_name_file_line_and_field(tmp_path, line, field):
    (tmp_path / "test_no.jsonl").write_text('{"id": "a", "prompt": "Hei på deg"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_study1_prompts("no", tmp_path)
    msg = str(e.value)
    assert "test_no.jsonl" in msg and "2" in msg and field in msg


def test_duplicate_ids_and_missing_files_are_errors(tmp_path):
    (tmp_path / "test_en.jsonl").write_text('{"id": "a", "prompt": "Hi"}\n{"id": "a", "prompt": "Ho"}\n')
    with pytest.raises(DataError, match="duplicate id"):
        load_study1_prompts("en", tmp_path)
    with pytest.raises(DataError, match="no test_bn.jsonl"):
        load_study1_prompts("bn", FIXTURE)
    with pytest.raises(ConfigError, match="folder not found"):
        load_study1_prompts("en", tmp_path / "nope")


def test_github_source_uses_the_cache_and_fails_clearly_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYINSTRUCT_CACHE_DIR", str(tmp_path))

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(study1.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="offline, pass a local folder"):
        load_study1_prompts("en", "github")
    cached = tmp_path / "study1" / study1.DEFAULT_COMMIT / "test_en.jsonl"
    cached.parent.mkdir(parents=True)
    cached.write_bytes((FIXTURE / "test_en.jsonl").read_bytes())
    assert len(load_study1_prompts("en", "github")) == 3  # served from the cache, no network
    assert study1.raw_url("en").endswith(f"/{study1.DEFAULT_COMMIT}/test-data/test_en.jsonl")


def test_eval_set_values():
    assert resolve_eval_set("embedded") is None
    assert resolve_eval_set("study1") == "github"
    assert resolve_eval_set("study1@abc123") == "github@abc123"
    assert resolve_eval_set("study1:/data/test-data") == "/data/test-data"
    with pytest.raises(ConfigError, match="Did you mean: study1"):
        resolve_eval_set("study-1")


def test_experiment_config_selects_the_study1_set():
    from polyinstruct.experiment.arms import load_eval_prompts
    from polyinstruct.experiment.config import ExperimentConfig

    assert ExperimentConfig(model="m").eval_set == "embedded"
    cfg = ExperimentConfig(model="m", eval_languages=["en", "no", "zh"], eval_set=f"study1:{FIXTURE}")
    convs = load_eval_prompts(cfg)
    assert [c.id for c in convs[:2]] == ["0b0f7a52-1c1e-4a57-9a43-5f2a1d6c0e01.en",
                                         "6f1d2c3b-8e4a-4b2f-a1d7-2c9e5b7a4f02.en"]
    assert [c.language for c in convs] == ["en"] * 3 + ["no"] * 3 + ["zh"] * 3
    assert convs[-1].meta["prompt_id"] == "d7c2b1a0-3e4f-4a5b-8c6d-9e0f1a2b3c04"
    default = load_eval_prompts(ExperimentConfig(model="m", eval_languages=["no"]))
    assert len(default) == 50 and default[0].source == "polyinstruct-eval"  # the project's own prompts
    with pytest.raises(Exception, match="eval_set"):
        ExperimentConfig(model="m", eval_set="study2")
