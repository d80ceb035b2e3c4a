"""With a judge configured, the experiment's results carry judge totals before and after
the language penalty, and the penalty zeroes exactly the wrong-language answers."""

from __future__ import annotations

import json

import pytest

from polyinstruct.experiment.runner import run_experiment
from tests.judge.fake_server import ScriptedServer


@pytest.mark.slow
def test_base_cell_judged_through_an_openai_compatible_endpoint(tiny_model_dir, tmp_path):
    server = ScriptedServer(lambda body, n: ("ok", "The answer is fine. Rating: [[3]]"))
    with server:
        root = run_experiment({
            "name": "judged", "output_dir": str(tmp_path / "exp"), "model": str(tiny_model_dir),
            "arms": ["base"], "train_languages": ["en", "fr"], "eval_languages": ["en", "fr"],
            "eval": {"prompts_per_language": 3, "max_new_tokens": 8, "batch_size": 6},
            "judge": {"model": "scripted-judge", "base_url": server.base_url, "api_key_env": "NO_SUCH_KEY",
                      "cache_dir": str(tmp_path / "judge-cache"), "backoff_base": 0.01},
        }, report=False)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    judgments = [json.loads(line) for line in
                 (root / "cells" / "base" / "judge" / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == 6 and len(server.calls) == 6
    for j in judgments:  # final = score x [lang(answer) == lang(question)]; strict: undetermined scores 0 too
        assert j["score"] == 3 and j["language_policy"] == "strict"
        assert j["final_score"] == (3 if j["language_match"] is True else 0)
    assert {r["language"] for r in rows} == {"en", "fr"}
    for r in rows:
        mine = [j for j in judgments if j["language"] == r["language"]]
        assert r["judge_total"] == 9 and r["judge_max"] == 9  # 3 prompts x score 3
        assert r["judge_language_policy"] == "strict"
        assert r["judge_n_undetermined"] == sum(j["language_match"] is None for j in mine)
        assert r["judge_total_penalized"] == sum(j["final_score"] for j in mine)
        assert r["lang_match_raw_rate"] == pytest.approx(sum(j["language_match"] is True for j in mine) / 3)
        assert r["lang_match_rate"] == pytest.approx(r["lang_match_raw_rate"] - sum(
            i["prompt_echo"] and i["lang_match_raw"] for i in r["items"]) / 3)  # echoes are not answers
        assert r["lang_undetermined_rate"] == pytest.approx(sum(j["language_match"] is None for j in mine) / 3)
