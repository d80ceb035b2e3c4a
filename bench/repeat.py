"""Run a benchmark several times and report the median of every numeric figure.

Each run still measures polyinstruct and its peer side by side in one process, so a
ratio's median comes from ratios taken under the same conditions. Usage:

    python bench/repeat.py -n 3 bench/train_throughput.py --steps 20

The last line printed is one JSON object: the bench name, the number of runs, and for
each numeric field its median (plus ``<field>_min`` / ``<field>_max`` where runs differed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys


def last_json(output: str) -> dict:
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            return json.loads(line)
    raise SystemExit(f"the bench printed no JSON line:\n{output[-2000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=3)
    ap.add_argument("bench", help="path of the bench script")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the bench")
    a = ap.parse_args()
    runs = []
    for i in range(a.runs):
        proc = subprocess.run([sys.executable, a.bench, *a.args], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        runs.append(last_json(proc.stdout))
        print(f"run {i + 1}/{a.runs}: {json.dumps(runs[-1])}", flush=True)
    print(json.dumps(summarize(runs, a.bench)))
    return 0


def flatten(obj, prefix: str = "") -> dict:
    """Nested dicts/lists as dotted keys (``runs.0.ratio``), so nested figures get medians too."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        items = ((str(i), x) for i, x in enumerate(obj))
    else:
        return {prefix: obj}
    out: dict = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def summarize(runs: list[dict], default_name: str = "") -> dict:
    flat = [flatten(r) for r in runs]
    summary: dict = {"bench": runs[0].get("bench", default_name), "runs": len(runs)}
    for key in flat[0]:
        values = [f.get(key) for f in flat]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            summary[key] = statistics.median(values)
            if min(values) != max(values):  # a range only where the runs differed
                summary[f"{key}_min"], summary[f"{key}_max"] = min(values), max(values)
        elif key != "bench":
            summary[key] = values[0] if len(set(map(json.dumps, values))) == 1 else values
    return summary


if __name__ == "__main__":
    sys.exit(main())
