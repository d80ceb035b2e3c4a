"""CLI: ``polyinstruct lid`` and ``polyinstruct judge``."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lid", help="identify the language of texts or of a JSONL field",
                       description="Language identification (normalized ISO 639-1 codes; 'und' = undetermined).")
    p.add_argument("texts", nargs="*", help="texts to identify (or use --jsonl)")
    p.add_argument("--jsonl", help="read texts from this JSONL file")
    p.add_argument("--field", default="response", help="JSONL field holding the text (default: response)")
    p.add_argument("--backend", default="auto",
                   help="auto (default: OpenLID when its file is present, else fasttext-lingua), fasttext-lingua, "
                        "fasttext-lite, fasttext-openlid, lingua, langid")
    p.add_argument("--model-path", help="model file for fasttext-openlid")
    p.add_argument("--threshold", type=float, default=0.5, help="below this confidence -> und (default 0.5)")
    p.add_argument("--min-letters", type=int, default=10, help="fewer letters than this -> und (default 10)")
    p.add_argument("--no-refine", action="store_true", help="raw model output: no nb/da, bg/ru tie-breakers")
    p.add_argument("--eval", nargs="?", const="", metavar="DIR",
                   help="measure accuracy on the eval prompts (default: the bundled set) and print the confusion")
    p.add_argument("--eval-field", default="reference", choices=["reference", "prompt", "heldout"],
                   help="reference answers or prompts of the eval set, or the held-out LID set")
    p.set_defaults(func=_lid)

    j = sub.add_parser("judge", help="LLM-as-a-judge over a predictions JSONL",
                       description="Judge predictions (single 1-3 / 1-10 grading or pairwise vs references) "
                                   "with the language-ID penalty; writes judgments.jsonl, summary.json, summary.md.")
    j.add_argument("predictions", help="predictions JSONL (id, messages, response, language, model[, reference])")
    j.add_argument("--out", required=True, help="output folder")
    j.add_argument("--judge", required=True, help="judge config YAML, or a model name on $OPENAI_BASE_URL")
    j.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a judge config field (repeatable), e.g. --set mode=pairwise")
    j.add_argument("--lid", default="auto", help="identifier for the language penalty, or 'none'")
    j.add_argument("--language-policy", default=None, choices=["strict", "lenient"],
                   help="strict (study 1, default): an undetermined language scores 0; lenient: it keeps its score "
                        "(default: the judge config's language_policy)")
    j.add_argument("--lenient-close-pairs", action="store_true", default=None,
                   help="no/da, bg/ru and similar mismatches count as undetermined, not wrong language "
                        "(default: the judge config's lenient_close_pairs)")
    j.add_argument("--seen-languages", help="comma-separated languages for the robustness average")
    j.add_argument("--no-progress", action="store_true")
    j.set_defaults(func=_judge)

    ae = sub.add_parser("judge-alpacaeval", help="AlpacaEval pairwise judging: win rate and length-controlled "
                        "win rate against a reference system",
                        description="Pairwise judging with AlpacaEval's own annotator prompt and parser, read from "
                                    "the installed alpaca-eval package (extra 'alpaca-eval'); writes "
                                    "annotations.jsonl and summary.json.")
    ae.add_argument("predictions", help="candidate predictions JSONL (id, messages, response[, reference])")
    ae.add_argument("--out", required=True, help="output folder")
    ae.add_argument("--judge", required=True, help="judge config YAML, or a model name on $OPENAI_BASE_URL")
    ae.add_argument("--reference", help="the reference system's predictions JSONL (same ids); default: the "
                                        "predictions' 'reference' field")
    ae.add_argument("--annotator", default="alpaca_eval_gpt4", help="AlpacaEval annotator config name")
    ae.add_argument("--seed", type=int, default=0, help="seed of the per-prompt output order (recorded)")
    ae.add_argument("--no-progress", action="store_true")
    ae.set_defaults(func=_alpaca_eval)

    a = sub.add_parser("judge-agreement", help="human-human and human-LLM agreement from a human score file",
                       description="Annotator agreement (exact, Cohen's kappa; pairwise ties count half) and, with "
                                   "--judgments, system-level Pearson per language between humans and the judge.")
    a.add_argument("human", help="JSONL: {id, model, language, annotator, score | preference}")
    a.add_argument("--judgments", help="judgments.jsonl written by `polyinstruct judge`")
    a.set_defaults(func=_agreement)


def _lid(args: argparse.Namespace) -> int:
    kw = dict(threshold=args.threshold, min_letters=args.min_letters, refine=not args.no_refine)
    if args.model_path:
        kw["model_path"] = args.model_path
    if args.eval is not None:
        from polyinstruct.lang.accuracy import evaluate_lid, format_confusion

        res = evaluate_lid(args.eval or None, args.backend, field=args.eval_field, **kw)
        print(format_confusion(res))
        for e in res["errors"]:
            print(f"  miss {e['id']}: {e['gold']} -> {e['predicted']} ({e['confidence']}): {e['text']!r}")
        print(json.dumps({k: res[k] for k in ("identifier", "field", "n", "accuracy", "per_language")}))
        return 0
    from polyinstruct.lang.identify import load_identifier

    ident = load_identifier(args.backend, **kw)
    if args.jsonl:
        from polyinstruct.judge.run import read_text_field

        texts = read_text_field(args.jsonl, args.field)
    else:
        texts = args.texts or [line.rstrip("\n") for line in sys.stdin]
    for text, (code, conf) in zip(texts, ident.identify(texts)):
        print(json.dumps({"language": code, "confidence": round(conf, 4), "text": text[:80]}, ensure_ascii=False))
    return 0


def _judge(args: argparse.Namespace) -> int:
    from polyinstruct.config import apply_overrides
    from polyinstruct.judge.config import resolve_judge_config
    from polyinstruct.judge.run import judge_predictions

    cfg = resolve_judge_config(args.judge)
    if args.set:
        cfg = resolve_judge_config(apply_overrides(cfg.model_dump(), args.set))
    seen = args.seen_languages.split(",") if args.seen_languages else None
    summary = judge_predictions(args.predictions, args.out, judge=cfg,
                                lid=None if args.lid == "none" else args.lid,
                                progress=not args.no_progress, seen_languages=seen,
                                lenient_close_pairs=args.lenient_close_pairs, language_policy=args.language_policy)
    with open(f"{args.out}/summary.md", encoding="utf-8") as f:
        print(f.read())
    print(json.dumps({k: summary[k] for k in ("n", "scored", "cached", "unparsed", "errors", "usage")}))
    return 0


def _alpaca_eval(args: argparse.Namespace) -> int:
    from polyinstruct.judge.alpacaeval import run_alpaca_eval

    summary = run_alpaca_eval(args.predictions, args.out, judge=args.judge, annotator=args.annotator,
                              reference_path=args.reference, seed=args.seed, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


def _agreement(args: argparse.Namespace) -> int:
    from polyinstruct.judge.agreement import agreement_report

    print(json.dumps(agreement_report(args.human, args.judgments), indent=2))
    return 0
