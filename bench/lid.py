"""Language-ID backends side by side on the project's evaluation set.

Measures accuracy (references and prompts) and throughput of polyinstruct's
default (fastText lid.176 lite + the nb/da, bg/ru tie-breakers) against the raw
fastText output and the peers langid and lingua (when installed).

    python bench/lid.py --quick       # under a minute: fasttext-lite (+raw) and langid
    python bench/lid.py               # adds lingua (all 75 languages, slow to load)

The last printed line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time

from polyinstruct.lang.identify import load_identifier
from polyinstruct.lang.accuracy import evaluate_lid, format_confusion, load_eval_texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--eval-dir", default=None)
    args = ap.parse_args()
    setups = [("fasttext-lite", {}), ("fasttext-lite-raw", {"refine": False}), ("langid", {})]
    if not args.quick and importlib.util.find_spec("lingua"):
        setups.append(("lingua", {}))
    n_texts = len(load_eval_texts(args.eval_dir, "reference")) + len(load_eval_texts(args.eval_dir, "prompt"))
    figures: dict[str, dict] = {}
    for label, kw in setups:
        t0 = time.perf_counter()
        ident = load_identifier(label.replace("-raw", ""), **kw)
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        ref = evaluate_lid(args.eval_dir, ident, field="reference")
        prm = evaluate_lid(args.eval_dir, ident, field="prompt")
        run_s = time.perf_counter() - t1
        print(format_confusion(ref))
        print(f"  prompts: accuracy {prm['accuracy']:.4f}; load {load_s:.2f}s, {n_texts / run_s:.0f} texts/s\n")
        figures[label] = {"reference_accuracy": ref["accuracy"], "prompt_accuracy": prm["accuracy"],
                          "reference_per_language": ref["per_language"], "load_s": round(load_s, 3),
                          "texts_per_s": round(n_texts / run_s, 1)}
    print(json.dumps({"bench": "lid", "n_reference": ref["n"], "n_prompt": prm["n"], "backends": figures}))


if __name__ == "__main__":
    main()
