"""eval.benchmarks in experiment configs and the report's benchmark table (arm x benchmark)."""

import json
from types import SimpleNamespace

import pytest


def _summary(model, scores):
    """A polyinstruct eval summary.json as run.evaluate writes it (scores: benchmark -> (score, se, in_avg))."""
    from polyinstruct.eval.scoring import benchmark_scores, suite_average

    rows = [{"task": f"t_{b}", "benchmark": b, "setting": "s", "score": s, "stderr": se, "in_average": avg,
             "higher_is_better": b != "toxigen", "subtasks": {}} for b, (s, se, avg) in scores.items()]
    rows.append({"task": "tulu_tydiqa_goldp", "benchmark": "tydiqa_pl", "setting": "goldp", "score": None,
                 "subtasks": {"tulu_tydiqa_goldp_en": {"score": 50.0}, "tulu_tydiqa_goldp_ru": {"score": 30.0}}})
    bench = benchmark_scores(rows)
    return {"model": model, "limit": None, "tasks": rows, "benchmarks": bench, "average": suite_average(bench)}


def test_report_benchmark_table_per_arm(tmp_path):
    from polyinstruct.report.benchmarks import benchmark_sections

    for cell, s in (("base", _summary("base", {"mmlu": (40.0, 2.0, True), "gsm8k": (10.0, 1.0, True),
                                                "toxigen": (30.0, 3.0, False)})),
                    ("multi", _summary("multi", {"mmlu": (44.0, 2.0, True), "gsm8k": (20.0, 1.0, True),
                                                 "toxigen": (20.0, 3.0, False)}))):
        d = tmp_path / "cells" / cell / "benchmarks"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(s))
    secs = benchmark_sections(SimpleNamespace(root=tmp_path, cells=["base", "multi", "mono"]), tmp_path)
    title, note, header, rows, _ = secs[0]
    assert title == "Benchmarks"
    assert header == ["arm", "mmlu", "gsm8k", "toxigen (lower is better) †", "average"]
    assert rows == [["base", "40.0 ± 2.0", "10.0 ± 1.0", "30.0 ± 3.0", "25.0 ± 1.1"],
                    ["multi", "44.0 ± 2.0", "20.0 ± 1.0", "20.0 ± 3.0", "32.0 ± 1.1"]]
    per_lang = [s for s in secs if s[0] == "tulu_tydiqa_goldp: per language"]
    assert per_lang and per_lang[0][2] == ["arm", "en", "ru"] and per_lang[0][3][0] == ["base", "50.0", "30.0"]
    assert per_lang[0][4] is not None and per_lang[0][4].is_file()


def test_experiment_config_accepts_benchmarks_and_rejects_typos():
    from polyinstruct.experiment.config import ExperimentConfig

    cfg = ExperimentConfig.model_validate({"model": "m", "eval": {"benchmarks": {
        "tasks": ["tulu"], "data_dir": "/data", "limit": 5, "task_options": {"judge": "x"}}}})
    assert cfg.eval.benchmarks.tasks == ["tulu"] and cfg.eval.benchmarks.limit == 5
    assert ExperimentConfig.model_validate({"model": "m"}).eval.benchmarks is None
    with pytest.raises(Exception, match="taks"):
        ExperimentConfig.model_validate({"model": "m", "eval": {"benchmarks": {"tasks": ["tulu"], "taks": 1}}})


def test_experiment_yaml_data_dir_is_relative_to_the_yaml(tmp_path):
    from polyinstruct.experiment.runner import load_experiment_config

    (tmp_path / "bench").mkdir()
    (tmp_path / "exp.yaml").write_text("model: some/model\neval:\n  benchmarks:\n    tasks: [tulu_gsm8k_cot]\n"
                                       "    data_dir: bench\n", encoding="utf-8")
    cfg = load_experiment_config(str(tmp_path / "exp.yaml"))
    assert cfg.eval.benchmarks.data_dir == str(tmp_path / "bench")
