"""PNG plots with matplotlib (Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from polyinstruct.lang.scripts import CJK, has_script
from polyinstruct.report.load import ExperimentData
from polyinstruct.report.uncertainty import column_languages
from polyinstruct.stats import Interval


# Tried in order for every glyph (matplotlib >= 3.6 falls back per glyph): Latin/Cyrillic, then
# Bengali and CJK, so labels in any of the studies' languages render instead of boxes.
FONT_FALLBACK = ["DejaVu Sans", "Noto Sans", "Noto Sans Bengali", "Noto Sans CJK SC", "Noto Sans CJK JP",
                 "Noto Sans SC", "Droid Sans Fallback"]


_FONT_FILES = ("NotoSans-Regular", "NotoSansBengali-Regular", "NotoSansCJK-Regular", "DroidSansFallback")
_fonts_checked = False


def available_fonts() -> list[str]:
    """The families of ``FONT_FALLBACK`` that matplotlib can use here.

    matplotlib caches its font list when first run, so fonts installed later (fonts-noto-core,
    fonts-noto-cjk) are added from the system font folders once per process.
    """
    global _fonts_checked
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    if not _fonts_checked and not all(f in names for f in FONT_FALLBACK[:4]):
        _fonts_checked = True
        for path in font_manager.findSystemFonts(fontext="ttf") + font_manager.findSystemFonts(fontext="otf"):
            if any(Path(path).stem == stem for stem in _FONT_FILES) or path.endswith("NotoSansCJK-Regular.ttc"):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        names = {f.name for f in font_manager.fontManager.ttflist}
    return [f for f in FONT_FALLBACK if f in names]


def fonts_for(text: str) -> list[str]:
    """The fallback list for a figure's text: the Latin/Cyrillic fonts, plus Bengali and CJK fonts
    only when the text has those scripts (loading the large CJK font for every chart is slow)."""
    fonts = available_fonts()
    bengali = has_script(text, "Beng")
    cjk = has_script(text, *CJK)
    return [f for f in fonts if ("Bengali" in f and bengali) or (("CJK" in f or f.endswith(("SC", "Fallback"))) and cjk)
            or not any(k in f for k in ("Bengali", "CJK", "SC", "Fallback"))]


def _plt(text: str = ""):
    """pyplot on the Agg backend with a font fallback list covering the scripts in ``text``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fonts = fonts_for(text)
    if fonts:
        plt.rcParams["font.family"] = fonts
    return plt


def bar_by_language(data: ExperimentData, title: str, out: Path,
                    intervals: dict[str, dict[str, Interval | None]], scale: float = 1.0,
                    is_rate: bool = False) -> Path | None:
    """Grouped bars: one group per language column, one bar per arm, 95% bootstrap error bars.

    Missing values are left out (no bar), never drawn as 0; rate axes run from 0 to 100.
    """
    fig = bar_figure(data, title, intervals, scale, is_rate)
    if fig is None:
        return None
    fig.savefig(out)
    _plt().close(fig)
    return out


def bar_figure(data: ExperimentData, title: str, intervals: dict[str, dict[str, Interval | None]],
               scale: float = 1.0, is_rate: bool = False):
    """The figure of ``bar_by_language`` (None when there is nothing to draw)."""
    cols = [label for label, _ in column_languages(data)]
    cells = [c for c in data.cells if any(intervals.get(c, {}).get(label) is not None for label in cols)]
    if not cells:
        return None
    plt = _plt(" ".join([title, *cols, *cells]))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(cols) + 2), 3.8), dpi=110)
    width = 0.8 / max(1, len(cells))
    for i, c in enumerate(cells):
        xs, ys, lo, hi = [], [], [], []
        for j, label in enumerate(cols):
            iv = intervals[c].get(label)
            if iv is None or iv.estimate is None:
                continue
            xs.append(j + (i - (len(cells) - 1) / 2) * width)
            ys.append(iv.estimate * scale)
            lo.append(max(0.0, (iv.estimate - iv.low) * scale))
            hi.append(max(0.0, (iv.high - iv.estimate) * scale))
        ax.bar(xs, ys, width=width, label=c, yerr=[lo, hi], capsize=2, error_kw={"elinewidth": 0.8})
    seen = {r["language"]: r.get("seen", True) for r in data.results}
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([label.replace(" (pooled)", "\n(pooled)") if label not in seen
                        else label if seen.get(label, True) else f"{label}\n(unseen)" for label in cols])
    ax.set_title(f"{title}\n(bars: 95% bootstrap interval)", fontsize=10)
    if is_rate:
        ax.set_ylim(0, 100)  # rates never below 0
    else:
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.legend(fontsize=8, ncols=min(4, len(cells)))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def loss_curves(data: ExperimentData, out: Path) -> Path | None:
    series = {c: pts for c, pts in data.losses.items() if pts}
    if not series:
        return None
    plt = _plt(" ".join(series))
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=110)
    for c, pts in series.items():
        steps, losses = [p[0] for p in pts], [p[1] for p in pts]
        line, = ax.plot(steps, losses, alpha=0.35, linewidth=1)
        k = max(1, min(5, len(losses) // 4))  # moving average: per-step loss is noisy at small batches
        smooth = [sum(losses[max(0, i - k + 1):i + 1]) / len(losses[max(0, i - k + 1):i + 1]) for i in range(len(losses))]
        ax.plot(steps, smooth, color=line.get_color(), linewidth=2, label=f"{c} (train, {k}-step mean)")
        val = data.val_losses.get(c) or []
        if val:
            ax.plot([p[0] for p in val], [p[1] for p in val], "o--", label=f"{c} (validation)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per assistant token")
    ax.set_title("Training loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def budget_bars(data: ExperimentData, out: Path) -> Path | None:
    cells = [c for c in data.cells if c in data.budgets]
    if not cells:
        return None
    plt = _plt(" ".join(cells))
    fig, ax = plt.subplots(figsize=(6.0, 3.2), dpi=110)
    ax.bar(cells, [data.tokens(c) for c in cells], label="tokens seen")
    ax.bar(cells, [data.tokens(c, "loss_tokens") for c in cells], label="loss-bearing tokens")
    ax.set_title("Training budget per arm")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
