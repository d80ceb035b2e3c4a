"""Language-ID backends side by side: the held-out LID set and the evaluation prompts.

Measures per-language accuracy on the held-out set (``resources/data/lid_heldout``,
8 languages x 58 texts written to measure identifiers and never used to tune them),
on the evaluation prompts' reference answers and questions, and throughput, for
polyinstruct's default offline identifier (``fasttext-lingua``: fastText lid.176 with
lingua deciding inside confusable groups) against the previous default
(``fasttext-lite`` with the word-list tie-breakers), raw fastText, and the peers
langid and lingua (all 75 languages).

    python bench/lid.py --quick       # fasttext-lingua, fasttext-lite (+raw)
    python bench/lid.py               # adds langid and lingua (slow to load)

The last printed line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import time

from polyinstruct.lang.accuracy import evaluate_lid, format_confusion, load_eval_texts
from polyinstruct.lang.identify import load_identifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--eval-dir", default=None, help="evaluation prompts folder (default: the bundled set)")
    ap.add_argument("--heldout-dir", default=None, help="held-out LID folder (default: the bundled set)")
    args = ap.parse_args()
    setups = [("fasttext-lingua", {}), ("fasttext-lite", {}), ("fasttext-lite-raw", {"refine": False})]
    if not args.quick:
        setups += [("langid", {}), ("lingua", {})]
    n_texts = sum(len(load_eval_texts(d, f)) for d, f in
                  [(args.heldout_dir, "heldout"), (args.eval_dir, "reference"), (args.eval_dir, "prompt")])
    figures: dict[str, dict] = {}
    for label, kw in setups:
        t0 = time.perf_counter()
        ident = load_identifier(label.replace("-raw", ""), **kw)
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        held = evaluate_lid(args.heldout_dir, ident, field="heldout")
        batches = {b: evaluate_lid(args.heldout_dir, ident, field=f"heldout-{b}")["per_language"] for b in (1, 2)}
        ref = evaluate_lid(args.eval_dir, ident, field="reference")
        prm = evaluate_lid(args.eval_dir, ident, field="prompt")
        run_s = time.perf_counter() - t1
        print(format_confusion(held))
        for e in held["errors"]:
            print(f"  miss {e['id']}: {e['gold']} -> {e['predicted']} ({e['confidence']}): {e['text']!r}")
        print(f"  eval references {ref['accuracy']:.4f}, eval prompts {prm['accuracy']:.4f} "
              f"(per language: {prm['per_language']}); load {load_s:.2f}s, {n_texts / run_s:.0f} texts/s\n")
        figures[label] = {"heldout_accuracy": held["accuracy"], "heldout_per_language": held["per_language"],
                          "heldout_min_language": min(held["per_language"].values()),
                          "heldout_batch1_per_language": batches[1], "heldout_batch2_per_language": batches[2],
                          "reference_accuracy": ref["accuracy"], "prompt_accuracy": prm["accuracy"],
                          "prompt_per_language": prm["per_language"], "load_s": round(load_s, 3),
                          "texts_per_s": round(n_texts / run_s, 1)}
    print(json.dumps({"bench": "lid", "n_heldout": held["n"], "n_reference": ref["n"], "n_prompt": prm["n"],
                      "backends": figures}))


if __name__ == "__main__":
    main()
