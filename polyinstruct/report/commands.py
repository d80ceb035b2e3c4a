"""CLI: ``polyinstruct report EXPERIMENT_DIR``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.md and report.html for an experiment directory")
    p.add_argument("experiment_dir")
    p.add_argument("--out", default=None, help="output folder (default: EXPERIMENT_DIR/report)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from polyinstruct.report import write_report

    path = write_report(args.experiment_dir, args.out)
    print(f"report: {path}")
    return 0
