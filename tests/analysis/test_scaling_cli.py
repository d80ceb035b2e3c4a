"""The size axis end to end: an experiment with `sizes:` writes sized results, `analyze scaling`
fits them, `analyze allocate` writes a mixture `data mix` reads; bad input fails clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from polyinstruct.cli import main
from polyinstruct.experiment.config import ExperimentConfig


def _write_results(path, laws):
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for lang, (a, b, c) in laws.items():
            for s in (0, 4, 8, 16, 32, 64):
                f.write(json.dumps({"cell": "base" if s == 0 else f"multi@{s}", "arm": "base" if s == 0 else "multi",
                                    "language": lang, "size": s,
                                    "chrf": a + b * np.log(s + c) + rng.normal(0, 0.1)}) + "\n")


def test_scaling_then_allocate_then_mix(tmp_path, capsys):
    _write_results(tmp_path / "results.jsonl", {"fr": (10, 4, 3), "ru": (5, 6, 8), "zh": (2, 1, 1)})
    assert main(["analyze", "scaling", str(tmp_path), "--resamples", "50"]) == 0
    study = json.loads((tmp_path / "analysis" / "scaling.json").read_text())
    assert study["arm"] == "multi" and set(study["fits"]) == {"fr", "ru", "zh"}
    assert study["fits"]["ru"]["log"]["params"]["b"] == pytest.approx(6, rel=0.1)
    assert (tmp_path / "analysis" / "scaling.png").stat().st_size > 1000
    mix = tmp_path / "mix.yaml"
    assert main(["analyze", "allocate", str(tmp_path / "analysis"), "--budget", "60", "--floor", "zh=5",
                 "--cap", "ru=30", "--out", str(mix)]) == 0
    alloc = json.loads((tmp_path / "mix.allocation.json").read_text())
    assert sum(alloc["amounts"].values()) == 60 and alloc["amounts"]["zh"] >= 5 and alloc["amounts"]["ru"] <= 30
    assert alloc["gain_over_uniform"] >= 0
    assert yaml.safe_load(mix.read_text())["total"] == 60
    assert main(["data", "mix", str(mix), str(tmp_path / "mixed")]) == 0
    langs = json.loads((tmp_path / "mixed" / "manifest.json").read_text())["languages"]
    assert langs == {k: v for k, v in alloc["amounts"].items() if v}


@pytest.mark.parametrize("rows,args,msg", [
    ([{"language": "fr", "chrf": 1.0}], [], "no size axis"),
    ([{"language": "fr", "size": 4, "arm": "multi", "chrf": 1.0}], ["--metric", "bleu"], "no metric 'bleu'"),
    ([{"language": "fr", "size": 4, "arm": "multi", "chrf": 1.0},
      {"language": "fr", "size": 4, "arm": "mono", "chrf": 1.0}], [], "choose one with --arm"),
])
def test_scaling_input_errors_name_file_and_field(tmp_path, capsys, rows, args, msg):
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["analyze", "scaling", str(tmp_path), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and "results.jsonl" in err


def test_allocate_errors_are_clear(tmp_path, capsys):
    assert main(["analyze", "allocate", str(tmp_path), "--budget", "10"]) == 1
    assert "analyze scaling" in capsys.readouterr().err
    _write_results(tmp_path / "results.jsonl", {"fr": (1, 1, 1)})
    main(["analyze", "scaling", str(tmp_path), "--resamples", "10", "--laws", "log"])
    assert main(["analyze", "allocate", str(tmp_path), "--budget", "10", "--law", "power"]) == 1
    assert "no 'power' fit" in capsys.readouterr().err
    assert main(["analyze", "allocate", str(tmp_path), "--budget", "10", "--floor", "fr"]) == 1
    assert "LANG=N" in capsys.readouterr().err


def test_sizes_expand_cells():
    cfg = ExperimentConfig(model="m", arms=["base", "multi", "mono-fr"], sizes=[16, 4])
    assert [(c.name, c.size, c.arm_name) for c in cfg.cells()] == [
        ("base", 0, "base"), ("multi@4", 4, "multi"), ("multi@16", 16, "multi"),
        ("mono-fr@4", 4, "mono-fr"), ("mono-fr@16", 16, "mono-fr")]
    assert [c.size for c in ExperimentConfig(model="m").cells()] == [None, None]
    with pytest.raises(ValueError, match="distinct positive"):
        ExperimentConfig(model="m", sizes=[0, 4])


@pytest.mark.slow
def test_experiment_with_a_size_axis_feeds_the_scaling_fit(tiny_model_dir, tmp_path):
    from polyinstruct.experiment.runner import run_experiment

    root = run_experiment({
        "name": "sizes", "output_dir": str(tmp_path / "exp"), "model": str(tiny_model_dir),
        "arms": ["base", "mono-fr"], "sizes": [2, 4], "train_languages": ["en", "fr"], "eval_languages": ["fr"],
        "downsample_by": "examples",
        "train": {"epochs": 1, "global_batch_size": 4, "micro_batch_size": 4, "max_length": 512, "select_best": False},
        "eval": {"prompts_per_language": 2, "max_new_tokens": 4, "batch_size": 4},
    }, report=False)
    rows = [json.loads(line) for line in (root / "results.jsonl").read_text().splitlines()]
    assert sorted({(r["cell"], r["size"]) for r in rows}) == [("base", 0), ("mono-fr@2", 2), ("mono-fr@4", 4)]
    for n in (2, 4):  # each size trains on its own arms: n examples per language
        lines = (root / "sizes" / str(n) / "arms" / "mono-fr.jsonl").read_text().splitlines()
        assert len(lines) == n
        assert json.loads((root / "cells" / f"mono-fr@{n}" / "run" / "budget.json").read_text())
    assert main(["analyze", "scaling", str(root), "--laws", "log1p", "--resamples", "10"]) == 0
    study = json.loads((root / "analysis" / "scaling.json").read_text())
    assert {lang: [p[0] for p in pts] for lang, pts in study["points"].items()} == {"fr": [0, 2, 4]}
    # reference log-probabilities: one row per cell, a continuous score the same fit reads
    from polyinstruct.experiment.refscore import reference_logprobs

    ref = reference_logprobs(root)
    assert sorted((r["cell"], r["size"], r["language"]) for r in ref) == [
        ("base", 0, "fr"), ("mono-fr@2", 2, "fr"), ("mono-fr@4", 4, "fr")]
    assert all(r["n"] == 2 and r["ref_logprob"] < 0 for r in ref)
    assert main(["analyze", "scaling", str(root / "analysis" / "ref_logprob.jsonl"), "--metric", "ref_logprob",
                 "--laws", "log1p", "--resamples", "10", "--out", str(root / "analysis" / "ref")]) == 0


def test_report_sections_appear_when_the_experiment_has_the_data(tmp_path, tiny_model_dir):
    from polyinstruct.report.analysis_section import analysis_sections
    from polyinstruct.report.load import ExperimentData

    _write_results(tmp_path / "results.jsonl", {"fr": (10, 4, 3), "ru": (5, 6, 8)})
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    curve = [{"layer": i, "cos_parallel": 0.5, "cos_mismatched": 0.4, "cos_gap": 0.1 * i, "retrieval_en_xx": 0.2,
              "retrieval_xx_en": 0.3, "cka": 0.5} for i in range(4)]
    (tmp_path / "analysis" / "alignment").mkdir(parents=True)
    (tmp_path / "analysis" / "alignment" / "alignment.json").write_text(json.dumps(
        {"models": [{"model": "m", "label": "base", "layers": 4, "curves": {"fr": curve}}]}))
    data = ExperimentData(root=tmp_path, config={"model": str(tiny_model_dir), "downsample_by": "tokens"},
                          results=results)
    sections = {s[0]: s for s in analysis_sections(data, tmp_path)}
    assert set(sections) == {"Scaling laws", "Budget allocation from the fitted laws",
                             "Layer-wise cross-lingual alignment", "Tokenizer fertility"}
    scaling = sections["Scaling laws"]
    assert {r[0] for r in scaling[3]} == {"fr", "ru"} and scaling[4].is_file()
    alloc_rows = sections["Budget allocation from the fitted laws"][3]
    assert sum(int(r[1]) for r in alloc_rows) == 128  # largest size x languages
    assert sections["Layer-wise cross-lingual alignment"][3][0][:2] == ["base", "cos_gap"]
    assert [r[0] for r in sections["Tokenizer fertility"][3]] == ["en", "fr", "ru"]
    # an experiment without a size axis, alignment or token budgets gets none of them
    plain = ExperimentData(root=tmp_path / "none", config={"model": "m", "downsample_by": "examples"},
                           results=[{k: v for k, v in r.items() if k != "size"} for r in results])
    assert analysis_sections(plain, tmp_path) == []
