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


# The budget the quickstart is sized for: the whole job on an idle 2-core machine.
BUDGET_S = 600


def time_summary(root: str | os.PathLike) -> str:
    """Where the run's time went (provenance.json), against the 10-minute budget, with the load."""
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
    load = hw.get("load_average_1m")
    cpus = hw.get("cpu_count")
    busy = (f"; load average {load} on {cpus} CPUs: the machine was busy, so this overstates an idle run"
            if load is not None and cpus and load > 0.5 * cpus else "")
    lines = [f"[time] {total:.0f} s in all (budget {BUDGET_S} s on an idle 2-core machine){busy}",
             f"[time] where it went: {parts}"]
    cells = prov.get("cell_seconds") or {}
    if cells and prov.get("earlier_invocations"):  # resumed: cells finished by earlier invocations
        lines.append("[time] cells as they ran (all invocations): " + ", ".join(
            f"{c} {v['seconds']:.0f} s" for c, v in cells.items()) + f"; {prov.get('cells_total_s', 0):.0f} s in all")
    return "\n".join(lines)
