"""``polyinstruct data translate SRC --to fr,es --engine ENGINE --model M --out DIR``.

Added to the ``polyinstruct data`` group by ``polyinstruct/cli.py`` (``GROUP_EXTENSIONS``), so
``polyinstruct.data`` never imports translation or inference code. The engines named in the help
are the engine registry's (``translate.engines.ENGINES``, whose module imports nothing heavy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

def cmd_translate(args: argparse.Namespace) -> int:
    from polyinstruct.translate.engines import load_engine
    from polyinstruct.translate.gates import GateConfig
    from polyinstruct.translate.run import translate_dataset

    options: dict[str, Any] = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}
    if args.engine in ("hf", "vllm"):
        options.update(prompt_style=args.prompt_style, template=args.template)
    if args.engine in ("marian", "nllb", "m2m100"):
        options["num_beams"] = args.num_beams
    if args.engine == "openai":
        options.update(base_url=args.base_url, api_key_env=args.api_key_env, concurrency=args.concurrency)
        if args.max_retries is not None:
            options["max_retries"] = args.max_retries
    if args.device and args.engine in ("hf", "marian", "nllb", "m2m100"):
        options["device"] = args.device
    options = {k: v for k, v in options.items() if v is not None}
    gates = GateConfig(lid=args.lid, min_ratio=args.min_ratio, max_ratio=args.max_ratio,
                       check_numbers=not args.no_number_check, back_translate=args.back_translate,
                       min_bt_chrf=args.min_bt_chrf)
    import logging

    from polyinstruct.data import is_path_like

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the progress bar

    if not is_path_like(args.src):  # fail before loading a model: a catalogue name, or a clear error
        from pathlib import Path

        from polyinstruct.data.catalogue import load_catalogue
        from polyinstruct.errors import DataError

        if "/" in args.src or os.sep in args.src or Path(args.src).suffix in (".json", ".jsonl", ".parquet", ".csv",
                                                                               ".tsv", ".gz"):
            raise DataError("no such file or folder", path=args.src)
        load_catalogue(args.catalogue).get(args.src)
    engine = load_engine(args.engine, args.model, **options)
    try:
        res = translate_dataset(args.src, args.to.split(","), args.out, engine, source_language=args.src_lang,
                                fmt=args.format, catalogue=args.catalogue, gates=gates, cache_path=args.cache,
                                chunk_size=args.chunk_size, limit=args.limit, name=args.name,
                                progress=not args.no_progress)
    finally:
        engine.close()
    _print_summary(res.summary)
    if args.json:
        print(json.dumps(res.summary, ensure_ascii=False))
    if not res.summary["complete"]:
        print("error: some pieces failed in the engine (see the log above); rerun the same command to retry them "
              "(finished records and the cache are kept)", file=sys.stderr)
        return 1
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    head = ["language", "records", "accepted", "rejected", "LID conf", "len ratio", "BT chrF", "translated",
            "cached"]
    rows = []
    for lang, s in summary["languages"].items():
        fmt = lambda v: "-" if v is None else str(v)  # noqa: E731
        rows.append([lang, str(s["records"]), str(s["accepted"]), str(s["rejected"]), fmt(s["lid_mean_confidence"]),
                     fmt(s["length_ratio_mean"]), fmt(s["back_translation_chrf_mean"]),
                     str(s["this_run"]["pieces_translated"]), str(s["this_run"]["cache_hits"])])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    print("\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]))
    for lang, s in summary["languages"].items():
        for reason, n in s["rejected_by_reason"].items():
            print(f"  {lang}: {n} rejected: {reason}")
    print(f"wrote {', '.join(summary['languages'])} (+ rejects, summary.json, catalogue.yaml)")


def register_translate(sub: Any) -> None:
    """Add ``translate`` to the ``polyinstruct data`` subcommands."""
    from polyinstruct.translate.engines import ENGINES

    p = sub.add_parser("translate", help="machine-translate a dataset into other languages, with quality gates",
                       description="Translate every message of every record (code, URLs, placeholders and markdown "
                                   "kept) into each --to language; one OUT/<lang>.jsonl per language, rejects, "
                                   "summary.json and catalogue.yaml. Rerun the same command to resume. "
                                   "See docs/translation.md.")
    p.add_argument("src", help="dataset file/folder (any supported format) or catalogue name")
    p.add_argument("--to", required=True, help="comma-separated target language codes, e.g. fr,es,ru")
    p.add_argument("--engine", required=True, metavar="ENGINE",
                   help=f"one of {', '.join(ENGINES.names())} (docs/translation.md)")
    p.add_argument("--model", required=True, help="model path / packaged name / hub id (may hold {src} and {tgt} "
                                                  "for per-pair Marian models), or the API model name")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--src-lang", default="en", help="source language (default en)")
    p.add_argument("--name", default=None, help="dataset name base for catalogue.yaml (default: SRC's stem)")
    p.add_argument("--format", default=None, help="source format (default: detect)")
    p.add_argument("--catalogue", action="append", default=[], metavar="FILE", help="extra catalogue YAML")
    p.add_argument("--cache", default=None, help="translation cache file (default OUT/cache.jsonl; share it "
                                                  "between runs and output folders)")
    p.add_argument("--limit", type=int, default=None, help="translate only the first N records")
    p.add_argument("--batch-size", type=int, default=None, help="pieces per engine call (default: per engine)")
    p.add_argument("--chunk-size", type=int, default=256, help="records translated, gated and written together")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--device", default=None)
    g = p.add_argument_group("causal LM engines (hf, vllm)")
    g.add_argument("--prompt-style", choices=("chat", "completion"), default="chat",
                   help="chat: instruction as a user turn (instruct models); completion: 'English: ... / French:' "
                        "continuation (base models)")
    g.add_argument("--template", default=None, help="chat template (default: the model's own)")
    g = p.add_argument_group("seq2seq engines (marian, nllb, m2m100)")
    g.add_argument("--num-beams", type=int, default=None)
    g = p.add_argument_group("openai engine")
    g.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL)")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    g.add_argument("--concurrency", type=int, default=None)
    g.add_argument("--max-retries", type=int, default=None)
    g = p.add_argument_group("quality gates")
    g.add_argument("--lid", default="fasttext-lite", help="language identifier (polyinstruct.lang)")
    g.add_argument("--min-ratio", type=float, default=None, help="lowest translation/source length (chars)")
    g.add_argument("--max-ratio", type=float, default=None, help="highest translation/source length (chars)")
    g.add_argument("--no-number-check", action="store_true", help="do not reject changed numbers")
    g.add_argument("--back-translate", action="store_true", help="translate back and gate on chrF (2x cost)")
    g.add_argument("--min-bt-chrf", type=float, default=25.0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="also print summary.json")
    p.set_defaults(func=cmd_translate)
