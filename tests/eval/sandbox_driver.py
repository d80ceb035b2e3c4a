"""Runs programs in polyinstruct's sandbox for tests/eval/test_sandbox.py, as whichever user starts it.

stdin: {"limits": {...}, "programs": {name: source}, "workers": N}
stdout (last line): {"outcomes": {name: Outcome fields}, "peak_rss_mb": ..., "base_rss_mb": ..., "uid": ...}

The test starts it as the current user and, when that is root, as uid 65534 under
``setpriv``, so that every attack is tried both ways.
"""

import json
import os
import sys
from dataclasses import asdict

from polyinstruct.eval.sandbox import Limits, Sandbox


def _rss_mb(field: str = "VmRSS") -> float:
    # VmHWM: this process's peak RSS (ru_maxrss would carry the pre-exec peak of the forking parent)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    req = json.loads(sys.stdin.read())
    sandbox = Sandbox(Limits(**req.get("limits", {})), workers=int(req.get("workers", 2)))
    base = _rss_mb()
    names = list(req["programs"])
    outs = sandbox.run_many([req["programs"][n] for n in names])
    peak = _rss_mb("VmHWM")
    print(json.dumps({"outcomes": {n: asdict(o) for n, o in zip(names, outs)}, "base_rss_mb": base,
                      "peak_rss_mb": peak, "uid": os.getuid(), "binds": sandbox.binds}))


if __name__ == "__main__":
    main()
