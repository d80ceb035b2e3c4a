"""The report renders every section from an experiment directory's files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from polyinstruct.fileio import write_json, write_jsonl
from polyinstruct.report import write_report
from polyinstruct.report.load import load_experiment
from polyinstruct.report.tables import metric_table


def _fake_experiment(root: Path) -> Path:
    langs = [("en", True), ("fr", True), ("bn", False)]
    rows = []
    for cell, rate in (("base", 0.25), ("multi", 0.75)):
        for lang, seen in langs:
            rows.append({"cell": cell, "arm": cell, "language": lang, "seen": seen, "n": 4,
                         "lang_match_rate": rate, "chrf": 10.0 + rate * 20,
                         "judge_total": 8.0, "judge_total_penalized": 8.0 * rate, "judge_max": 12})
        cdir = root / "cells" / cell
        preds = [{"id": f"eval-01.{lang}", "language": lang, "messages": [{"role": "user", "content": f"Q<{lang}>"}],
                  "response": f"{cell} answer in {lang}", "reference": "ref"} for lang, _ in langs]
        write_jsonl(cdir / "predictions.jsonl", preds)
        if cell != "base":
            write_jsonl(cdir / "run" / "metrics.jsonl", [{"step": s, "loss": 3.0 / s} for s in range(1, 6)]
                        + [{"step": 5, "val_loss": 0.9}])
            write_json(cdir / "run" / "budget.json", {"tokens_seen": 1234, "loss_tokens": 600, "steps": 5,
                                                      "wall_time_s": 3.2, "flops_estimate": 1.5e9})
    write_jsonl(root / "results.jsonl", rows)
    (root / "experiment.yaml").write_text("name: unit\nmodel: tiny\n", encoding="utf-8")
    return root


def test_metric_table_has_one_row_per_arm_and_means_split_by_seen(tmp_path):
    data = load_experiment(_fake_experiment(tmp_path))
    header, rows = metric_table(data, "lang_match_rate", lambda v: f"{100 * v:.1f}")
    assert header == ["arm", "en", "fr", "bn*", "mean seen", "mean unseen"]
    assert rows == [["base", "25.0", "25.0", "25.0", "25.0", "25.0"],
                    ["multi", "75.0", "75.0", "75.0", "75.0", "75.0"]]


def test_report_md_and_html_contain_tables_plots_and_samples(tmp_path):
    root = _fake_experiment(tmp_path)
    html_path = write_report(root)
    html = html_path.read_text(encoding="utf-8")
    md = (root / "report" / "report.md").read_text(encoding="utf-8")
    # every section is present, in both renderings
    for title in ("answers in the prompt's language (%)", "chrF vs reference", "Language robustness",
                  "Budget per arm", "Training loss", "Sample answers"):
        assert title in md and title.replace("'", "&#x27;") in html
    # robustness = judge total before minus after penalty, mean over seen languages: 8 - 2 = 6 for base
    assert "| base | 6.00 | 12 |" in md
    # images are inlined (self-contained html) and also written as PNG files
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) >= 4
    assert (root / "report" / "loss.png").stat().st_size > 1000
    assert "multi answer in fr" in html


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    html_path = write_report(_fake_experiment(tmp_path))
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
