"""One cache variable, POLYINSTRUCT_CACHE_DIR, with a subfolder per kind (issue 10 item 11)."""

from __future__ import annotations

import pytest

from polyinstruct.errors import ConfigError


def test_models_and_judgments_share_one_cache_root(tmp_path, monkeypatch):
    from polyinstruct.judge.config import JudgeConfig, cache_path
    from polyinstruct.models import packaged

    for old in ("POLYINSTRUCT_CACHE", "POLYINSTRUCT_JUDGE_CACHE"):
        monkeypatch.delenv(old, raising=False)
    monkeypatch.setenv("POLYINSTRUCT_CACHE_DIR", str(tmp_path))
    assert packaged.prepared_path("gemma-3-270m") == tmp_path / "models" / "gemma-3-270m"
    assert cache_path(JudgeConfig(model="gpt-4o-mini")) == tmp_path / "judge" / "gpt-4o-mini.jsonl"


@pytest.mark.parametrize("old", ["POLYINSTRUCT_CACHE", "POLYINSTRUCT_JUDGE_CACHE"])
def test_an_old_cache_variable_is_refused_with_the_new_name(old, tmp_path, monkeypatch):
    from polyinstruct.judge.config import JudgeConfig, cache_path

    monkeypatch.delenv("POLYINSTRUCT_CACHE_DIR", raising=False)
    monkeypatch.setenv(old, str(tmp_path))
    with pytest.raises(ConfigError, match=f"\\${old} is no longer read.*POLYINSTRUCT_CACHE_DIR"):
        cache_path(JudgeConfig(model="m"))
