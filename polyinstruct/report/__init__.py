"""Reports: per-language tables, bar charts, loss curves, budgets and sample answers
for an experiment directory, as report.md and a self-contained report.html."""

from polyinstruct.report.render import write_report

__all__ = ["write_report"]
