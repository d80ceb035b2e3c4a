"""``polyinstruct data prefs DATA --model M --out DIR``: sample, score and pair answers.

Registered under ``polyinstruct data`` by ``polyinstruct/data/commands.py``; imports nothing heavy at
import time (``polyinstruct.data`` stays free of inference code).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_prefs(args: argparse.Namespace) -> int:
    from polyinstruct.prefs.build import make_prefs

    rep = make_prefs(args.data, args.model, args.out, k=args.k, backend=args.backend, decoding=args.decoding,
                     max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed, lid=args.lid,
                     rejected_from=args.rejected_from, reference_as_chosen=args.reference_as_chosen,
                     min_chrf_gap=args.min_chrf_gap, limit=args.limit)
    skipped = ", ".join(f"{n} {k}" for k, n in rep["skipped"].items()) or "none"
    print(f"{rep['pairs']} pairs from {rep['prompts']} prompts (skipped: {skipped}) -> {rep['pairs_file']}")
    print("reasons: " + ", ".join(f"{k} {n}" for k, n in rep["reasons"].items()))
    if args.json:
        print(json.dumps(rep, ensure_ascii=False))
    return 0


def register_prefs(sub: Any) -> None:
    p = sub.add_parser("prefs", help="language-consistency preference pairs from a model's own answers "
                                     "(sample k, score language/echo/chrF, pair)")
    p.add_argument("data", help="prompts (any SFT format; a final assistant turn is the reference answer)")
    p.add_argument("--model", required=True, help="model or run folder that answers")
    p.add_argument("--out", required=True, help="output folder: samples.jsonl (resumable), pairs.jsonl, report.json")
    p.add_argument("--k", type=int, default=4, help="answers sampled per prompt (0: only --rejected-from/reference)")
    p.add_argument("--backend", default="hf", help="inference backend (hf, vllm, openai)")
    p.add_argument("--decoding", default="sample", help="sample (temperature 0.9, top-p 0.95) or a preset name")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lid", default="auto", help="language identifier (polyinstruct lang)")
    p.add_argument("--rejected-from", default=None, metavar="PREDICTIONS.jsonl",
                   help="another arm's predictions (infer predict rows) added as candidates")
    p.add_argument("--reference-as-chosen", action="store_true",
                   help="when no sampled answer is good, use the prompt's reference answer as the chosen side")
    p.add_argument("--min-chrf-gap", type=float, default=10.0,
                   help="all answers good: pair best and worst by chrF when they differ by at least this much")
    p.add_argument("--limit", type=int, default=None, help="first N prompts only")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_prefs)
