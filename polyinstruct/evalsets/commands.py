"""``polyinstruct data decontaminate`` (registered under ``data`` by cli.GROUP_EXTENSIONS, so that
polyinstruct.data never imports this higher area)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_decontaminate(args: argparse.Namespace) -> int:
    from polyinstruct.evalsets.decontaminate import decontaminate

    scorer = None
    if args.crosslingual_model:
        from polyinstruct.evalsets.crosslingual import CrosslingualScorer

        scorer = CrosslingualScorer(args.crosslingual_model, layer=args.crosslingual_layer,
                                    threshold=args.crosslingual_threshold, batch_size=args.batch_size)
    summary = decontaminate(args.train, args.against, args.out, format=args.format, crosslingual=scorer,
                            on_error=args.on_error)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    xl = summary["crosslingual"]
    print(f"{summary['train']}: {summary['records_in']} records in = {summary['kept']} kept + {summary['removed']} "
          f"removed" + (f" + {summary['rejected']} rejected" if summary["rejected"] else "")
          + f" ({summary['train_texts']} turns against {summary['eval_texts']} evaluation texts, "
          f"{summary['seconds']} s)")
    for name, n in sorted(summary["removed_by_eval_set"].items(), key=lambda kv: -kv[1]):
        print(f"  {n:>7}  {name}")
    print("cross-lingual step: " + (f"{xl['model']} layer {xl['layer']}, threshold {xl['threshold']}" if xl else
                                    "off (translations and paraphrases are not checked; --crosslingual-model "
                                    "gemma-3-270m turns it on)"))
    print(f"wrote {summary['outputs']['kept']}, {summary['outputs']['removed']} and summary.json")
    return 0


def register(subparsers: Any) -> None:
    """Add ``decontaminate`` to the ``data`` command's subparsers."""
    p = subparsers.add_parser("decontaminate", help="remove training records that repeat an eval set or benchmark")
    p.add_argument("train", help="training data (any format `data` reads)")
    p.add_argument("--against", action="append", required=True, metavar="SET",
                   help="'embedded', a benchmark file (GSM8K test.jsonl, MGSM mgsm_xx.tsv, BBH task.json), a "
                        "conversation file or a folder (repeatable)")
    p.add_argument("--out", required=True, help="folder for kept.jsonl, removed.jsonl and summary.json")
    p.add_argument("--crosslingual-model", default=None, metavar="MODEL",
                   help="also flag translations and paraphrases with this model's sentence vectors "
                        "(gemma-3-270m: the calibrated one; default: off)")
    p.add_argument("--crosslingual-layer", type=int, default=None, help="hidden layer (default: the model's "
                   "calibrated layer)")
    p.add_argument("--crosslingual-threshold", type=float, default=None,
                   help="score threshold (default: the model's calibrated threshold)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--format", default=None, help="training data format (default: detect)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="bad training rows: stop with file:line, or write them to OUT/rejects.jsonl")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_decontaminate)
