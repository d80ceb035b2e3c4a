"""``polyinstruct quickstart``: the built-in small instance of the seed-1 experiment."""

from __future__ import annotations

import os
from pathlib import Path

from polyinstruct.config import load_yaml

QUICKSTART_CONFIG = Path(__file__).resolve().parent.parent / "resources" / "experiments" / "quickstart.yaml"


def quickstart_config() -> dict:
    return load_yaml(QUICKSTART_CONFIG)


def quickstart(output_dir: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
               *, progress: bool = True) -> Path:
    """Run the quickstart experiment; returns the path of report.html."""
    from polyinstruct.experiment.runner import run_experiment

    cfg = quickstart_config()
    if output_dir is not None:
        cfg["output_dir"] = str(output_dir)
    root = run_experiment(cfg, overrides, progress=progress)
    if progress:
        print(time_summary(root), flush=True)
    return root / "report" / "report.html"


# The budget the quickstart is sized for: the whole job on an idle 2-core machine (measured in
# docs/experiments.md, "The quickstart's time").
BUDGET_S = 300


def time_summary(root: str | os.PathLike) -> str:
    """Where the run's time went (provenance.json), against the 5-minute budget, with the load."""
    from polyinstruct.fileio import read_json

    path = Path(root) / "provenance.json"
    if not path.exists():
        return "[time] no provenance.json: wall time not recorded"
    prov = read_json(path)
    stages = prov.get("stage_seconds") or {}
    total = prov.get("wall_time_s") or 0.0
    hw = prov.get("hardware") or {}
    parts = ", ".join(f"{k} {v:.0f} s ({100 * v / total:.0f}%)" for k, v in
                      sorted(stages.items(), key=lambda kv: -kv[1]) if total) or "-"
    # how busy the machine was when the run started (at the end the load includes the run's own
    # threads); CPU use over half a second, else the 1-minute load average (which lags)
    cpu = hw.get("cpu_percent_at_start")
    load = hw.get("load_average_1m_at_start")
    cpus = hw.get("cpu_count")
    if cpu is not None:
        busy = (f"; {cpu:.0f}% of the CPUs were in use when it started: the machine was busy, so this "
                "overstates an idle run" if cpu > 50 else "")
    else:
        busy = (f"; load average {load} on {cpus} CPUs when it started: the machine was busy, so this "
                "overstates an idle run" if load is not None and cpus and load > 0.5 * cpus else "")
    lines = [f"[time] {total:.0f} s in all (budget {BUDGET_S} s on an idle 2-core machine){busy}",
             f"[time] where it went: {parts}"]
    cells = prov.get("cell_seconds") or {}
    if cells and prov.get("earlier_invocations"):  # resumed: cells finished by earlier invocations
        lines.append("[time] cells as they ran (all invocations): " + ", ".join(
            f"{c} {v['seconds']:.0f} s" for c, v in cells.items()) + f"; {prov.get('cells_total_s', 0):.0f} s in all")
    return "\n".join(lines)
