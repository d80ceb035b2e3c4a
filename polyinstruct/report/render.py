"""Write report.md and a self-contained report.html (images inlined as base64)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import yaml

from polyinstruct.fileio import atomic_open
from polyinstruct.lang.scripts import CJK, has_script
from polyinstruct.report import plots, tables
from polyinstruct.report.load import ExperimentData, load_experiment

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","DejaVu Sans","Noto Sans Bengali","Noto Sans CJK SC","Noto Sans CJK JP","Noto Sans SC","Droid Sans Fallback",sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em;max-width:100%}
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left;white-space:nowrap}
thead th{background:#f3f4f6}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.sample td{text-align:left;white-space:pre-wrap;max-width:320px}
.note{color:#555;font-size:.9em}
table.kv td{text-align:left;word-break:break-all;white-space:normal}
.warn{color:#8a4b00;background:#fff6e5;padding:.4em .6em}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:.85em}
"""


def _sections(data: ExperimentData, out_dir: Path) -> list[tuple[str, str, list, list | None, Path | None]]:
    """(title, explanation, header, rows, image) for each section present in the data."""
    from polyinstruct.report.summary import summary_sections  # what the intervals say, where answers went

    out: list = summary_sections(data)
    paired_ok: list[str] = []
    for m in tables.metrics(data):
        ivs = tables.metric_intervals(data, m)
        header, rows = tables.metric_table(data, m, ivs)
        if not rows:
            continue
        img = plots.bar_by_language(data, m.title, out_dir / f"{m.key}.png", ivs, scale=m.scale,
                                    is_rate=m.kind == "rate")
        note = ("Each cell: estimate [95% percentile bootstrap interval, "
                f"{_resamples(ivs)} resamples, seed 0]; n answers per column (in the header when every arm has"
                " the same n). Columns marked * are languages not seen in training; pooled columns resample"
                " the answers of all those languages together.")
        if m.key == "lang_match_rate":
            note += (" Study 1's headline (docs/studies.md): language ID of the answer vs the prompt's language;"
                     " an answer that repeats the prompt is not counted as in language, and an answer whose"
                     " language is undetermined counts as not in language (the tables below show both).")
        if m.kind == "judge":
            policies = sorted({str(r.get("judge_language_policy")) for r in data.results
                               if r.get("judge_language_policy")})
            if policies:
                note += f" Language penalty policy: {', '.join(policies)}."
        out.append((m.title, note, header, rows, img))
        dh, drows = tables.difference_table(data, m)
        if drows:
            paired_ok.append(m.title)
            out.append((f"{m.title}: differences between arms", "A - B on the same prompts (paired bootstrap: "
                        "prompts resampled once per replicate for both arms), 95% interval; * marks an interval"
                        " that excludes 0.", dh, drows, None))
    header, rows = tables.robustness_table(data)
    if rows:
        out.append(("Language robustness",
                    "Judge total before minus after zeroing answers in the wrong language "
                    "(mean over seen languages); lower is more robust.", header, rows, None))
    header, rows = tables.data_budget_table(data)
    if rows:
        out.append(("Training data per arm", "Study 1's budget arms as built (docs/studies.md): multi holds N "
                    "languages' data, multi-down is sampled to the size of one language's data, en-only is "
                    "the English data alone.", header, rows, None))
    header, rows = tables.budget_table(data)
    out.append(("Budget per arm", "Arms compared against each other should cost the same tokens. An arm with a "
                "preference stage (+pref) shows its total, then each stage: its SFT run, the answers sampled "
                "to build its pairs (generation: not in tokens seen) and its preference run.",
                header, rows, plots.budget_bars(data, out_dir / "budget.png")))
    img = plots.loss_curves(data, out_dir / "loss.png")
    if img:
        out.append(("Training loss", "Mean cross-entropy per assistant (loss-bearing) token.", [], None, img))
    from polyinstruct.report.benchmarks import benchmark_sections  # polyinstruct eval per cell

    out += benchmark_sections(data, out_dir)
    from polyinstruct.report.analysis_section import analysis_sections  # scaling, allocation, alignment, fertility

    out += analysis_sections(data, out_dir)
    return out


def _resamples(ivs: dict) -> str:
    rs = {iv.resamples for per in ivs.values() for iv in per.values() if iv is not None}
    return "/".join(str(r) for r in sorted(rs)) or "-"


def _font_note(text: str) -> str | None:
    """Say so in the report when a script it shows has no font on this machine (boxes otherwise)."""
    scripts = {"Bengali": (("Beng",), "Noto Sans Bengali", "fonts-noto-core"),
               "CJK": (CJK, "Noto Sans CJK", "fonts-noto-cjk")}
    missing = []
    fonts = plots.available_fonts()
    for name, (codes, family, pkg) in scripts.items():
        if has_script(text, *codes) and not any(f.startswith(family) for f in fonts):
            missing.append(f"{name} ({family}: apt-get install {pkg})")
    return ("Fonts missing on the machine that rendered this report, so these scripts may show as boxes in "
            "the charts: " + "; ".join(missing)) if missing else None


def _provenance(data: ExperimentData) -> tuple[str, list[tuple[str, str]], str | None]:
    """(note, [(what, value)], resolved config as YAML) of the provenance section."""
    p: dict[str, Any] = data.provenance
    if not p:
        return ("No provenance.json in this experiment directory: it was run before polyinstruct recorded "
                "provenance, so versions, hashes, hardware and wall time are unknown.", [], None)
    hw = p.get("hardware") or {}
    git = p.get("git") or {}
    model = p.get("model") or {}
    stages = p.get("stage_seconds") or {}
    rows = [
        ("date (UTC)", str(p.get("date_utc"))),
        ("wall time", f"{p.get('wall_time_s')} s (this invocation; report rendering not included)"),
        ("where the time went", ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()) or "-"),
        ("cells as they ran", (", ".join(f"{c} {v['seconds']:.0f} s" + (f" (training {v['train_s']:.0f} s)"
                                                                         if "train_s" in v else "")
                                         for c, v in (p.get("cell_seconds") or {}).items())
                               + f"; {p.get('cells_total_s', 0):.0f} s in all") if p.get("cell_seconds") else "-"),
        ("earlier invocations", "; ".join(f"{e.get('date_utc')}: {e.get('wall_time_s')} s"
                                          for e in p.get("earlier_invocations") or []) or "none"),
        ("git commit", f"{git.get('commit')}{' (uncommitted changes)' if git.get('dirty') else ''}"),
        ("model", f"{model.get('name')} at {model.get('path')}"),
        ("model sha256", str(model.get("sha256"))),
        ("decoding", ", ".join(f"{k}={v}" for k, v in (p.get("decoding") or {}).items())),
        ("hardware", f"{hw.get('cpu_count')} CPUs ({hw.get('machine')}), {hw.get('memory_gb')} GB, "
                     f"GPUs: {', '.join(hw.get('gpus') or []) or 'none'}, torch threads {hw.get('torch_threads', '-')},"
                     f" CPU use at the start {hw.get('cpu_percent_at_start', '-')}%, load average (1 min) at the "
                     f"start {hw.get('load_average_1m_at_start', '-')} and at the end {hw.get('load_average_1m')}"),
        ("platform", f"{hw.get('platform')}, Python {hw.get('python')}"),
        ("packages", ", ".join(f"{k} {v}" for k, v in (p.get("packages") or {}).items())),
    ]
    rows += [(f"data sha256: {k}", v) for k, v in (p.get("data_sha256") or {}).items()]
    rows += [(f"not recorded: {k}", v) for k, v in (p.get("missing") or {}).items()]
    cfg = yaml.safe_dump(p.get("config") or data.config, sort_keys=False, allow_unicode=True)
    return ("How these numbers were made (provenance.json, written by the run itself).", rows, cfg)


def write_report(experiment_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Render the report of an experiment directory; returns the path of report.html."""
    data = load_experiment(experiment_dir)
    out = Path(out_dir) if out_dir else Path(experiment_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    name = data.config.get("name", Path(experiment_dir).name)
    sections = _sections(data, out)
    sample_rows = tables.samples(data)

    prov_note, prov_rows, prov_cfg = _provenance(data)
    font_note = _font_note(json.dumps([data.languages, sample_rows], ensure_ascii=False))

    md = [f"# polyinstruct report: {name}", ""]
    model = data.config.get("model")
    if model:
        md += [f"Base model: `{model}`; arms: {', '.join(data.cells)}; "
               f"languages: {', '.join(data.languages)}.", ""]
    if font_note:
        md += [f"> {font_note}", ""]
    for title, note, header, rows, img in sections:
        md += [f"## {title}", "", note, ""]
        if rows is not None:
            md += [tables.to_markdown(header, rows), ""]
        if img:
            md += [f"![{title}]({img.name})", ""]
    if sample_rows:
        md += ["## Sample answers", ""]
        for s in sample_rows:
            md += [f"**[{s['language']}] {s['id']}**: {s['prompt']}", ""]
            for cell, ans in s["answers"].items():
                md += [f"- *{cell}*: {ans.strip() or '(empty)'}".replace("\n", " "), ""]
    md += ["## Provenance", "", prov_note, ""]
    if prov_rows:
        md += [tables.to_markdown(["what", "value"], [list(r) for r in prov_rows]), ""]
    if prov_cfg:
        md += ["Resolved config:", "", "```yaml", prov_cfg.rstrip(), "```", ""]
    with atomic_open(out / "report.md") as f:
        f.write("\n".join(md))

    body = [f"<h1>polyinstruct report: {html.escape(str(name))}</h1>"]
    if model:
        body.append(f"<p>Base model: <code>{html.escape(str(model))}</code>; arms: "
                    f"{html.escape(', '.join(data.cells))}; languages: {html.escape(', '.join(data.languages))}.</p>")
    if font_note:
        body.append(f"<p class='warn'>{html.escape(font_note)}</p>")
    for title, note, header, rows, img in sections:
        body.append(f"<h2>{html.escape(title)}</h2><p class='note'>{html.escape(note)}</p>")
        if rows is not None:
            body.append(tables.to_html(header, rows))
        if img:
            b64 = base64.b64encode(img.read_bytes()).decode("ascii")
            body.append(f"<img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>")
    if sample_rows:
        cells = data.cells
        body.append("<h2>Sample answers</h2><table class='sample'><thead><tr><th>prompt</th>"
                    + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr></thead><tbody>")
        for s in sample_rows:
            lang = html.escape(s["language"], quote=True)  # lang= lets the browser pick CJK/Bengali glyphs
            body.append(f"<tr><td lang='{lang}'><b>[{lang}]</b> {html.escape(s['prompt'])}</td>"
                        + "".join(f"<td lang='{lang}'>{html.escape(s['answers'][c].strip() or '(empty)')}</td>"
                                  for c in cells)
                        + "</tr>")
        body.append("</tbody></table>")
    body.append(f"<h2>Provenance</h2><p class='note'>{html.escape(prov_note)}</p>")
    if prov_rows:
        body.append(tables.to_html(["what", "value"], [list(r) for r in prov_rows], "kv"))
    if prov_cfg:
        body.append(f"<p>Resolved config:</p><pre>{html.escape(prov_cfg)}</pre>")
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>polyinstruct report: "
            f"{html.escape(str(name))}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>")
    with atomic_open(out / "report.html") as f:
        f.write(page)
    return out / "report.html"
