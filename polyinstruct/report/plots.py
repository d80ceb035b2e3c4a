"""PNG plots with matplotlib (Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from polyinstruct.report.load import ExperimentData


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_by_language(data: ExperimentData, key: str, title: str, out: Path, scale: float = 1.0) -> Path | None:
    """Grouped bars: one group per language, one bar per arm."""
    langs, cells = data.languages, data.cells
    values = {c: [] for c in cells}
    any_value = False
    for c in cells:
        for lang in langs:
            v = next((r.get(key) for r in data.results if r["cell"] == c and r["language"] == lang), None)
            any_value |= v is not None
            values[c].append(0.0 if v is None else v * scale)
    if not any_value:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(langs) + 2), 3.8), dpi=110)
    width = 0.8 / max(1, len(cells))
    for i, c in enumerate(cells):
        xs = [j + (i - (len(cells) - 1) / 2) * width for j in range(len(langs))]
        ax.bar(xs, values[c], width=width, label=c)
    seen = {r["language"]: r.get("seen", True) for r in data.results}
    ax.set_xticks(range(len(langs)))
    ax.set_xticklabels([lang if seen.get(lang, True) else f"{lang}\n(unseen)" for lang in langs])
    ax.set_title(title)
    ax.legend(fontsize=8, ncols=min(4, len(cells)))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def loss_curves(data: ExperimentData, out: Path) -> Path | None:
    series = {c: pts for c, pts in data.losses.items() if pts}
    if not series:
        return None
    plt = _plt()
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
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 3.2), dpi=110)
    ax.bar(cells, [data.budgets[c].get("tokens_seen", 0) for c in cells], label="tokens seen")
    ax.bar(cells, [data.budgets[c].get("loss_tokens", 0) for c in cells], label="loss-bearing tokens")
    ax.set_title("Training budget per arm")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
