"""The report renders every section from an experiment directory's files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from polyinstruct.fileio import write_json, write_jsonl
from polyinstruct.report import plots, write_report
from polyinstruct.report.load import load_experiment
from polyinstruct.report.provenance import write_provenance
from polyinstruct.report.tables import difference_table, metric_intervals, metric_table, metrics


# Per-prompt language matches (4 prompts per language) chosen so the intervals can be worked out by hand.
MATCH = {"base": [1, 0, 0, 0], "multi": [1, 1, 1, 0]}
PROMPTS = {"en": "How do I boil an egg?", "fr": "Comment cuire un œuf ?",
           "bn": "আমি কীভাবে একটি ডিম সেদ্ধ করব?", "zh": "我怎样煮鸡蛋？"}


def _fake_experiment(root: Path, langs=(("en", True), ("fr", True), ("bn", False)), provenance: bool = True) -> Path:
    rows = []
    for cell in ("base", "multi"):
        preds, judged = [], []
        for lang, seen in langs:
            items = [{"id": f"eval-0{i}.{lang}", "lang_match": m, "lang_undetermined": 0, "prompt_echo": 0}
                     for i, m in enumerate(MATCH[cell], 1)]
            rate = sum(MATCH[cell]) / 4
            rows.append({"cell": cell, "arm": cell, "language": lang, "seen": seen, "n": 4,
                         "lang_match_rate": rate, "lang_undetermined_rate": 0.0, "prompt_echo_rate": 0.0,
                         "chrf": 10.0 + rate * 20, "items": items,
                         "judge_total": 8.0, "judge_total_penalized": 8.0 * rate, "judge_max": 12})
            for i, m in enumerate(MATCH[cell], 1):
                preds.append({"id": f"eval-0{i}.{lang}", "language": lang,
                              "messages": [{"role": "user", "content": PROMPTS.get(lang, f"Q<{lang}>")}],
                              "response": f"{cell} answer {i} in {lang} " + PROMPTS.get(lang, ""),
                              "reference": f"reference answer {i} " + PROMPTS.get(lang, "")})
                judged.append({"id": f"eval-0{i}.{lang}", "language": lang, "score": 2.0 + m,
                               "final_score": (2.0 + m) * m})
        cdir = root / "cells" / cell
        write_jsonl(cdir / "predictions.jsonl", preds)
        write_jsonl(cdir / "judge" / "judgments.jsonl", judged)
        if cell != "base":
            write_jsonl(cdir / "run" / "metrics.jsonl", [{"step": s, "loss": 3.0 / s} for s in range(1, 6)]
                        + [{"step": 5, "val_loss": 0.9}])
            write_json(cdir / "run" / "budget.json", {"tokens_seen": 1234, "loss_tokens": 600, "steps": 5,
                                                      "wall_time_s": 3.2, "flops_estimate": 1.5e9})
    write_jsonl(root / "results.jsonl", rows)
    (root / "experiment.yaml").write_text("name: unit\nmodel: tiny\neval:\n  decoding: greedy\n", encoding="utf-8")
    if provenance:
        write_provenance(root, {"name": "unit", "model": "tiny", "eval": {"decoding": "greedy", "max_new_tokens": 8}},
                         model_path=None, started_at=time.time() - 12.5, stage_seconds={"train": 7.0, "predict": 5.5})
    return root


def test_rate_table_shows_estimate_interval_and_n(tmp_path):
    data = load_experiment(_fake_experiment(tmp_path))
    m = next(m for m in metrics(data) if m.key == "lang_match_rate")
    header, rows = metric_table(data, m)
    assert header == ["arm", "en (n=4)", "fr (n=4)", "bn* (n=4)", "seen (pooled) (n=8)", "unseen (pooled) (n=4)"]
    # multi: 3 of 4 -> a replicate's count is Binomial(4, .75), cumulative .004, .051, .26, .68, 1:
    # the 2.5% quantile is 1/4, the 97.5% quantile 4/4 (see tests/test_stats.py).
    assert rows[1][:2] == ["multi", "75.0 [25.0, 100.0]"]
    # base: 1 of 4 -> mirror image [0, 75]
    assert rows[0][:2] == ["base", "25.0 [0.0, 75.0]"]
    # fields scoring adds are shown without a report change; judge scores per answer too
    keys = [m.key for m in metrics(data)]
    assert keys[:3] == ["lang_match_rate", "lang_undetermined_rate", "prompt_echo_rate"]
    assert "chrf" in keys and "final_score" in keys


def test_paired_difference_between_arms_hand_computed(tmp_path):
    data = load_experiment(_fake_experiment(tmp_path))
    m = next(m for m in metrics(data) if m.key == "lang_match_rate")
    header, rows = difference_table(data, m)
    assert header[0] == "difference" and rows[0][0] == "multi - base"
    # per prompt multi - base = [0, 1, 1, 0]: mean .5; replicate means k/4 with P(k=0) = 1/16 > 2.5%,
    # so the interval [0, 100] touches 0 and carries no mark.
    assert rows[0][1] == "+50.0 [+0.0, +100.0]"
    # pooled seen (en + fr, 8 pairs, 4 ones): P(0 ones) = 1/256 < 2.5% -> low end above 0 -> marked
    seen = rows[0][header.index("seen (pooled)")]
    assert seen.endswith(" *") and seen.startswith("+50.0 [")
    # judge after the LID penalty: multi (3,3,3,0) vs base (3,0,0,0) per prompt
    jm = next(m for m in metrics(data) if m.key == "final_score")
    _, jrows = difference_table(data, jm)
    assert jrows[0][1].startswith("+1.5 [")


def test_rows_without_items_get_intervals_but_no_paired_difference(tmp_path):
    root = _fake_experiment(tmp_path)
    rows = [{k: v for k, v in r.items() if k != "items"} for r in load_experiment(root).results]
    write_jsonl(root / "results.jsonl", rows)
    data = load_experiment(root)
    m = next(m for m in metrics(data) if m.key == "lang_match_rate")
    assert metric_table(data, m)[1][1][:2] == ["multi", "75.0 [25.0, 100.0]"]  # same interval from rate and n
    assert difference_table(data, m)[1] == []


def test_rate_chart_has_error_bars_and_starts_at_zero(tmp_path):
    data = load_experiment(_fake_experiment(tmp_path))
    m = next(m for m in metrics(data) if m.key == "lang_match_rate")
    fig = plots.bar_figure(data, m.title, metric_intervals(data, m), scale=100, is_rate=True)
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 100.0)
    assert len(ax.containers) >= 2 and any(getattr(c, "has_yerr", False) for c in ax.containers)


@pytest.mark.slow  # renders every chart (a few seconds on an idle machine)
def test_report_md_and_html_contain_tables_plots_samples_and_provenance(tmp_path):
    root = _fake_experiment(tmp_path)
    html_path = write_report(root)
    html = html_path.read_text(encoding="utf-8")
    md = (root / "report" / "report.md").read_text(encoding="utf-8")
    for title in ("answers in the prompt's language, echoes excluded (%)", "differences between arms", "chrF vs reference",
                  "judge score per answer (after LID penalty)", "Language robustness", "Budget per arm",
                  "Training loss", "Sample answers", "Provenance"):
        assert title in md and title.replace("'", "&#x27;") in html
    assert "95% percentile bootstrap interval" in md
    # robustness = judge total before minus after penalty, mean over seen languages: 8 - 2 = 6 for base
    assert "| base | 6.00 | 12 |" in md
    # provenance: wall time, stage times, versions, git and the resolved config
    assert "| wall time | 12.5 s" in md and "train 7 s, predict 6 s" in md
    assert "| packages | polyinstruct " in md and "torch " in md and "git commit" in md
    assert "```yaml\nname: unit" in md
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) >= 4
    assert (root / "report" / "loss.png").stat().st_size > 1000
    assert "multi answer 1 in fr" in html and "lang='bn'" in html


@pytest.mark.slow  # renders every chart (a few seconds on an idle machine)
def test_report_says_when_provenance_or_fonts_are_missing(tmp_path, monkeypatch):
    root = _fake_experiment(tmp_path, provenance=False)
    monkeypatch.setattr(plots, "available_fonts", lambda: ["DejaVu Sans"])
    md = (write_report(root).parent / "report.md").read_text(encoding="utf-8")
    assert "No provenance.json" in md
    assert "Fonts missing" in md and "Bengali (Noto Sans Bengali: apt-get install fonts-noto-core)" in md


def test_charts_render_bengali_and_cjk_without_missing_glyphs(tmp_path):
    fonts = plots.available_fonts()
    if not any(f.startswith("Noto Sans Bengali") for f in fonts) or not any("CJK" in f for f in fonts):
        pytest.skip("Noto Bengali/CJK fonts not installed (.ci/run installs fonts-noto-core fonts-noto-cjk)")
    text = PROMPTS["bn"] + " " + PROMPTS["zh"]
    assert {"Noto Sans Bengali", "Noto Sans CJK SC"} <= set(plots.fonts_for(text))
    assert not any("CJK" in f or "Bengali" in f for f in plots.fonts_for("en fr ru Привет"))
    plt = plots._plt(text)
    fig, ax = plt.subplots()
    ax.set_title(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" for boxes
        fig.savefig(tmp_path / "glyphs.png")
    plt.close(fig)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    langs = (("en", True), ("zh", True), ("bn", False))  # CJK and Bengali text must render (fonts)
    html_path = write_report(_fake_experiment(tmp_path, langs=langs))
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,2400", html_path.as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000  # a rendered page with plots, not a blank one
    dom = subprocess.run([chromium, *flags, "--dump-dom", html_path.as_uri()], check=True,
                         capture_output=True, timeout=120, text=True).stdout
    assert dom.count("<table") >= 4 and dom.count("<img") >= 4


def test_quickstart_prints_where_the_time_went(tmp_path):
    from polyinstruct.experiment.quickstart import BUDGET_S, quickstart_config, time_summary

    text = time_summary(_fake_experiment(tmp_path))
    assert "[time] 12 s in all (budget 300 s" in text and "train 7 s (56%), predict 6 s (44%)" in text
    assert BUDGET_S == 300 and "no provenance.json" in time_summary(tmp_path / "missing")
    # the quickstart shows study 1's headline contrast: the English-only arm beside base and multilingual
    assert quickstart_config()["arms"] == ["base", "en-only", "multi", "multi-down"]


def test_quickstart_calls_the_machine_busy_by_its_load_at_the_start_not_its_own_load(tmp_path):
    import json

    from polyinstruct.experiment.quickstart import time_summary

    cases = (({"load_average_1m_at_start": 0.1}, False), ({"load_average_1m_at_start": 1.8}, True),
             # CPU use over half a second wins over the lagging load average when both are there
             ({"load_average_1m_at_start": 1.6, "cpu_percent_at_start": 3.0}, False),
             ({"load_average_1m_at_start": 0.2, "cpu_percent_at_start": 95.0}, True))
    for start, busy in cases:
        (tmp_path / "provenance.json").write_text(json.dumps({
            "wall_time_s": 280.0, "stage_seconds": {"train": 150.0, "predict": 130.0},
            "hardware": {"cpu_count": 2, "load_average_1m": 2.0, **start}}))
        assert ("the machine was busy" in time_summary(tmp_path)) is busy


def test_runner_progress_adds_up_seconds_per_stage(monkeypatch, capsys):
    from polyinstruct.experiment import cell

    clock = iter([0.0, 1.0, 3.0, 10.0, 11.0, 15.0, 20.0])
    monkeypatch.setattr(cell.time, "monotonic", lambda: next(clock))
    say = cell.StagePrinter(True)        # t0 = 0
    say("[model] resolving m")           # 1
    say("[1/2] base")                    # 3: model 2 s
    say("  predict base on en")          # 10: cell 7 s
    say("[2/2] multi")                   # 11: predict 1 s
    say("  train multi on multi.jsonl")  # 15: cell 4 s
    assert say.finish() == {"model": 2.0, "cell": 11.0, "predict": 1.0, "train": 5.0}
    assert "[    1.0s] [model] resolving m" in capsys.readouterr().out


def test_time_in_cells_is_split_into_the_cells_stages(tmp_path):
    """The quickstart's "where it went" names train/predict/score, summed over the cells that ran."""
    import json

    from polyinstruct.experiment.runner import _stage_seconds

    for cell, stages in (("base", {"predict": 6.0, "score": 1.0}), ("multi", {"train": 5.0, "predict": 4.0})):
        (tmp_path / "cells" / cell).mkdir(parents=True)
        (tmp_path / "cells" / cell / "done.json").write_text(json.dumps({"stage_seconds": stages}))
    got = _stage_seconds({"model": 2.0, "cell": 20.0}, tmp_path, ["base", "multi"])
    assert got == {"model": 2.0, "predict": 10.0, "score": 1.0, "train": 5.0, "cell other": 4.0}
    # a cell that finished in an earlier invocation is not counted; without stages the cell total stays
    assert _stage_seconds({"model": 2.0, "cell": 3.0}, tmp_path, []) == {"model": 2.0, "cell": 3.0}


def test_provenance_accounts_for_cells_and_earlier_invocations_of_a_resumed_run(tmp_path):
    from polyinstruct.report.provenance import collect_provenance

    root = _fake_experiment(tmp_path, provenance=False)
    for cell, took in (("base", 30.0), ("multi", 90.0)):
        cdir = root / "cells" / cell
        start = time.time() - 1000
        for f in cdir.rglob("*"):
            if f.is_file():
                os.utime(f, (start, start))
        write_json(cdir / "done.json", {"cell": cell, "finished_at": start + took})
    first = write_provenance(root, {"name": "unit"}, model_path=None, started_at=time.time() - 5)
    assert first["cell_seconds"]["base"]["seconds"] == pytest.approx(30.0, abs=0.2)
    assert first["cell_seconds"]["multi"] == {"seconds": pytest.approx(90.0, abs=0.2), "train_s": 3.2}
    assert first["cells_total_s"] == pytest.approx(120.0, abs=0.5) and first["earlier_invocations"] == []
    second = collect_provenance({"name": "unit"}, model_path=None, root=root, started_at=time.time() - 1)
    assert [e["wall_time_s"] for e in second["earlier_invocations"]] == [first["wall_time_s"]]
    assert "model_sha256" in second["missing"] and second["git"]["commit"]
