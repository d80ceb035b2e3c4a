"""``polyinstruct data {list,validate,convert,stats,mix,recipe,chunk,clean}``.

Each subcommand parses its arguments, calls one function of
``polyinstruct.data.api`` and prints the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from polyinstruct.data import api


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, default=str))


def _table(rows: list[list[str]], head: list[str]) -> str:
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def cmd_list(args: argparse.Namespace) -> int:
    entries = api.list_datasets(args.catalogue)
    if args.json:
        _print_json(entries)
        return 0
    rows = [[e["name"], ",".join(e.get("languages", [])), e.get("task_type", ""), e.get("generation", ""),
             e.get("license", ""), str(e.get("size", "")), e.get("format", "auto"), e["location"]] for e in entries]
    print(_table(rows, ["name", "languages", "task type", "generation", "license", "size", "format", "location"]))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from polyinstruct.data.preference import validate_preference_file, wants_preference

    if wants_preference(args.path, args.format):
        rep = validate_preference_file(args.path, args.format, on_error=args.on_error, rejects_path=args.rejects,
                                       output=args.output)
    else:
        rep = api.validate_file(args.path, args.format, on_error=args.on_error, rejects_path=args.rejects,
                                output=args.output, oasst_paths=args.oasst_paths,
                                merge_consecutive=args.merge_consecutive)
    for msg in rep["errors"]:
        print(msg, file=sys.stderr)
    if rep["rejected_total"] > len(rep["errors"]):
        print(f"... and {rep['rejected_total'] - len(rep['errors'])} more", file=sys.stderr)
    _print_counts(rep)
    if rep["output"]:
        print(f"wrote {rep['records']} valid records to {rep['output']}")
    if args.json:
        _print_json(rep)
    return 0 if rep["ok"] else 1


def _print_counts(rep: dict[str, Any]) -> None:
    unselected = (f" (OASST messages: {rep.get('oasst_used', 0)} in these records, {rep['unselected']} on no chosen "
                  "path)") if rep.get("unselected") or rep.get("oasst_used") else ""
    print(f"{rep['path'] if 'path' in rep else rep['input']}: {rep.get('rows', '?')} rows read, {rep['records']} "
          f"valid, {sum(rep['rejected'].values())} rejected{unselected}")
    for kind, n in sorted(rep["rejected"].items(), key=lambda kv: -kv[1]):
        print(f"  {n:>7}  {kind}")
    if rep.get("rejects"):
        print(f"rejected records: {rep['rejects']}")


def cmd_convert(args: argparse.Namespace) -> int:
    rep = api.convert_file(args.input, args.output, args.format, on_error=args.on_error, rejects_path=args.rejects,
                           source=args.source, language=args.language, oasst_paths=args.oasst_paths,
                           merge_consecutive=args.merge_consecutive)
    _print_counts(rep)
    print(f"wrote {rep['records']} records to {rep['output']}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from polyinstruct.data.preference import wants_preference
    from polyinstruct.data.stats import format_stats

    files = [d for d in args.datasets if _is_file(d)]
    if files and all(wants_preference(d, args.format) for d in files):
        return _preference_stats(args)
    stats = api.compute_stats(args.datasets, args.tokenizer, format=args.format, catalogue_paths=args.catalogue)
    if not args.json_only:
        print(format_stats(stats, ", ".join(args.datasets)))
    if args.json or args.json_only:
        _print_json(stats)
    return 0


def _is_file(d: str) -> bool:
    from pathlib import Path

    return Path(d).exists()


def _preference_stats(args: argparse.Namespace) -> int:
    """``data stats`` on preference files: pairs, lengths of prompt/chosen/rejected, language and reasons."""
    from itertools import chain

    from polyinstruct.data.preference import format_preference_stats, preference_stats, read_preferences

    streams = [read_preferences(d, args.format) for d in args.datasets]
    stats = preference_stats(chain.from_iterable(streams), args.tokenizer)
    stats["datasets"] = list(args.datasets)
    if not args.json_only:
        print(format_preference_stats(stats, ", ".join(args.datasets)))
    if args.json or args.json_only:
        _print_json(stats)
    return 0


def cmd_mix(args: argparse.Namespace) -> int:
    man = api.mix_from_config(args.config, args.out, args.overrides, args.catalogue)
    for s in man["sources"]:
        capped = f", {s['after_cap']} after cap" if s["after_cap"] != s["available"] else ""
        print(f"{s['dataset']}: {s['selected']} records ({s['unique_selected']} distinct) from {s['available']} "
              f"available{capped}; {s['tokens']} {man['unit']}")
    print(f"wrote {man['output']['records']} records to {args.out}/data.jsonl (manifest.json beside it)")
    return 0


def cmd_recipe(args: argparse.Namespace) -> int:
    if args.recipe == "budget":
        langs = args.languages.split(",") if args.languages else None
        rep = api.budget_recipe(args.out, languages=langs, dataset_pattern=args.dataset_pattern,
                                english=args.english, downsample_by=args.downsample_by, seed=args.seed,
                                tokenizer=args.tokenizer, catalogue_paths=args.catalogue)
        print(rep["table"])
        print(f"wrote {len(rep['files'])} arms and budget.json to {args.out}")
    else:
        rep = api.crosslingual_recipe(args.lang, args.out, seed=args.seed, include_general=not args.translation_only)
        print(f"wrote {rep['records']} records to {rep['output']}: " +
              ", ".join(f"{n} {k}" for k, n in sorted(rep["kinds"].items())))
    return 0


def cmd_chunk(args: argparse.Namespace) -> int:
    rep = api.chunk_file(args.input, args.output, args.max_tokens, tokenizer=args.tokenizer, format=args.format)
    print(f"{rep['records_in']} conversations -> {rep['records_out']} chunks in {rep['output']}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    rep = api.clean_file(args.input, args.output, dedup=None if args.dedup == "none" else args.dedup,
                         min_completion=args.min_completion, max_total=args.max_total, tokenizer=args.tokenizer,
                         format=args.format)
    removed = ", ".join(f"{n} {k}" for k, n in rep["removed"].items()) or "nothing"
    print(f"{rep['records_in']} in, {rep['records_out']} out; removed {removed}")
    return 0


def register(subparsers: Any) -> dict[str, Any]:
    """Add ``data`` and its actions; returns ``{"data": its subparsers}`` for higher areas' actions
    (cli.GROUP_EXTENSIONS: ``data translate``, ``data decontaminate``)."""
    from polyinstruct.data.formats import FORMATS

    data = subparsers.add_parser("data", help="datasets: list, validate, convert, stats, mix, recipes")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    formats = ", ".join(FORMATS.names())

    def common(p: argparse.ArgumentParser, fmt: bool = True, cat: bool = False) -> None:
        if fmt:
            p.add_argument("--format", default=None, help=f"source format (default: detect); one of {formats}")
        if cat:
            p.add_argument("--catalogue", action="append", default=[], metavar="FILE",
                           help="extra catalogue YAML file or folder (repeatable)")

    p = sub.add_parser("list", help="print the dataset catalogue")
    common(p, fmt=False, cat=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    def errors(p: argparse.ArgumentParser) -> None:
        p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                       help="raise: fail on bad records; skip: write them to a rejects file and go on")
        p.add_argument("--rejects", default=None, help="rejects file (default: <name>.rejects.jsonl)")
        p.add_argument("--oasst-paths", choices=("top", "all"), default="top",
                       help="OASST trees: top-ranked path or every path")
        p.add_argument("--merge-consecutive", action="store_true",
                       help="join two user (or assistant) turns in a row with a blank line instead of rejecting "
                            "the record (counted in meta.merged_turns)")

    p = sub.add_parser("validate", help="check every record; print path:line: field: reason")
    p.add_argument("path")
    common(p)
    errors(p)
    p.add_argument("--output", default=None, help="with --on-error skip: where the valid records go "
                                                  "(default <name>.clean.jsonl)")
    p.add_argument("--json", action="store_true", help="also print the report as JSON")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("convert", help="convert any supported format to canonical JSONL or Parquet")
    p.add_argument("input")
    p.add_argument("output", help=".jsonl or .parquet")
    common(p)
    errors(p)
    p.add_argument("--source", default=None, help="dataset name stored in each record")
    p.add_argument("--language", default=None, help="ISO 639-1 code for records that lack one")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("stats", help="instances, mean rounds, prompt/completion length per language (Tulu Table 1); "
                                     "for preference files: pairs, prompt/chosen/rejected lengths, reasons")
    p.add_argument("datasets", nargs="+", metavar="FILE|NAME")
    p.add_argument("--tokenizer", default=None, help="tokenizer path: count tokens instead of words")
    p.add_argument("--json", action="store_true", help="print the JSON after the table")
    p.add_argument("--json-only", action="store_true", help="print only the JSON")
    common(p, cat=True)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("mix", help="materialize a mixture from a YAML config (+ manifest.json)")
    p.add_argument("config", help="YAML: strategy, total, temperature, seed, shuffle, datasets: [{name, weight, cap}]")
    p.add_argument("out", help="output folder")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields, e.g. total=1000")
    common(p, fmt=False, cat=True)
    p.set_defaults(func=cmd_mix)

    p = sub.add_parser("recipe", help="budget arms (seed 1) or cross-lingual data (seed 4)")
    rsub = p.add_subparsers(dest="recipe", metavar="RECIPE", required=True)
    b = rsub.add_parser("budget", help="monolingual, multilingual, downsampled multilingual and English-only arms")
    b.add_argument("--out", required=True)
    b.add_argument("--languages", default=None, help="comma-separated codes (default: the embedded languages)")
    b.add_argument("--dataset-pattern", default="polyinstruct-instruct-{lang}",
                   help="dataset name or path per language, with {lang}")
    b.add_argument("--english", default="en")
    b.add_argument("--downsample-by", choices=("examples", "tokens"), default="examples",
                   help="multi-down arm: a random sample of examples (study 1, default) or of content length")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--tokenizer", default=None)
    common(b, fmt=False, cat=True)
    b.set_defaults(func=cmd_recipe)
    c = rsub.add_parser("crosslingual", help="translation + cross-lingual tasks for one language (embedded data)")
    c.add_argument("--lang", required=True)
    c.add_argument("--out", required=True, help=".jsonl or .parquet")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--translation-only", action="store_true")
    c.set_defaults(func=cmd_recipe)

    p = sub.add_parser("chunk", help="split conversations longer than N tokens at turn boundaries")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--tokenizer", default=None)
    common(p)
    p.set_defaults(func=cmd_chunk)

    p = sub.add_parser("clean", help="remove duplicates and out-of-range lengths")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--dedup", choices=("exact", "normalized", "none"), default="exact")
    p.add_argument("--min-completion", type=int, default=1)
    p.add_argument("--max-total", type=int, default=None)
    p.add_argument("--tokenizer", default=None)
    common(p)
    p.set_defaults(func=cmd_clean)
    # `data translate` is added by polyinstruct.translate (cli.GROUP_EXTENSIONS): translation needs
    # inference backends, a layer above data.
    return {"data": sub}
