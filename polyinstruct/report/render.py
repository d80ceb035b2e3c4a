"""Write report.md and a self-contained report.html (images inlined as base64)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from polyinstruct.fileio import atomic_open
from polyinstruct.report import plots, tables
from polyinstruct.report.load import ExperimentData, load_experiment

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
thead th{background:#f3f4f6}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.sample td{text-align:left;white-space:pre-wrap;max-width:320px}
.note{color:#555;font-size:.9em}
"""


def _sections(data: ExperimentData, out_dir: Path) -> list[tuple[str, str, list, list | None, Path | None]]:
    """(title, explanation, header, rows, image) for each section present in the data."""
    out: list = []
    for key, title, fmt in tables.METRICS:
        header, rows = tables.metric_table(data, key, fmt)
        if not rows:
            continue
        scale = 100.0 if key.endswith("_rate") else 1.0
        img = plots.bar_by_language(data, key, title, out_dir / f"{key}.png", scale=scale)
        note = "Columns marked * are languages not seen in training."
        if key == "lang_match_rate":
            note += (" Language ID of the answer vs the prompt's language; an answer that merely echoes the"
                     " prompt counts as in the right language, so read it with the echo rate below.")
        out.append((title, note, header, rows, img))
    header, rows = tables.robustness_table(data)
    if rows:
        out.append(("Language robustness",
                    "Judge total before minus after zeroing answers in the wrong language "
                    "(mean over seen languages); lower is more robust.", header, rows, None))
    header, rows = tables.data_budget_table(data)
    if rows:
        out.append(("Training data per arm", "Seed-1 budget arms as built: multi holds N languages' data, "
                    "multi-down is sampled to the size of one language's data.", header, rows, None))
    header, rows = tables.budget_table(data)
    out.append(("Budget per arm", "Arms compared against each other should cost the same tokens.",
                header, rows, plots.budget_bars(data, out_dir / "budget.png")))
    img = plots.loss_curves(data, out_dir / "loss.png")
    if img:
        out.append(("Training loss", "Mean cross-entropy per assistant (loss-bearing) token.", [], None, img))
    return out


def write_report(experiment_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Render the report of an experiment directory; returns the path of report.html."""
    data = load_experiment(experiment_dir)
    out = Path(out_dir) if out_dir else Path(experiment_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    name = data.config.get("name", Path(experiment_dir).name)
    sections = _sections(data, out)
    sample_rows = tables.samples(data)

    md = [f"# polyinstruct report: {name}", ""]
    model = data.config.get("model")
    if model:
        md += [f"Base model: `{model}`; arms: {', '.join(data.cells)}; "
               f"languages: {', '.join(data.languages)}.", ""]
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
    with atomic_open(out / "report.md") as f:
        f.write("\n".join(md))

    body = [f"<h1>polyinstruct report: {html.escape(str(name))}</h1>"]
    if model:
        body.append(f"<p>Base model: <code>{html.escape(str(model))}</code>; arms: "
                    f"{html.escape(', '.join(data.cells))}; languages: {html.escape(', '.join(data.languages))}.</p>")
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
            body.append(f"<tr><td><b>[{html.escape(s['language'])}]</b> {html.escape(s['prompt'])}</td>"
                        + "".join(f"<td>{html.escape(s['answers'][c].strip() or '(empty)')}</td>" for c in cells)
                        + "</tr>")
        body.append("</tbody></table>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>polyinstruct report: "
            f"{html.escape(str(name))}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>")
    with atomic_open(out / "report.html") as f:
        f.write(page)
    return out / "report.html"
