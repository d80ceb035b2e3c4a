"""``polyinstruct analyze {scaling,allocate,alignment}`` (docs/analysis.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from polyinstruct.errors import ConfigError, DataError


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _amounts(items: list[str] | None, flag: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items or []:
        lang, sep, num = item.partition("=")
        if not sep or not lang.strip():
            raise ConfigError(f"expected LANG=N, got {item!r}", field=flag)
        try:
            out[lang.strip()] = int(num)
        except ValueError:
            raise ConfigError(f"expected an integer after '=', got {item!r}", field=flag) from None
    return out


def cmd_scaling(args: argparse.Namespace) -> int:
    from polyinstruct.analysis.scaling import DEFAULT_LAWS, results_path, scaling_study, scaling_table, write_scaling

    study = scaling_study(args.source, metric=args.metric, laws=_csv(args.laws) or list(DEFAULT_LAWS), arm=args.arm,
                          languages=_csv(args.languages), bootstrap=args.bootstrap, resamples=args.resamples,
                          seed=args.seed)
    out = Path(args.out) if args.out else results_path(args.source).parent / "analysis"
    paths = write_scaling(study, out)
    print(scaling_table(study))
    print(f"wrote {paths['json']}, {paths['table']}, {paths['plot']}")
    return 0


def cmd_allocate(args: argparse.Namespace) -> int:
    import yaml

    from polyinstruct.analysis.allocate import allocate, mixture_config
    from polyinstruct.analysis.scaling import curves_from_study
    from polyinstruct.fileio import atomic_open, write_json

    path = Path(args.study)
    if path.is_dir():
        path = path / "scaling.json" if (path / "scaling.json").is_file() else path / "analysis" / "scaling.json"
    if not path.is_file():
        raise DataError("no scaling study here: run `polyinstruct analyze scaling` first", path=str(path))
    try:
        study = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg})", path=str(path), line=e.lineno) from None
    try:
        curves, concave = curves_from_study(study, args.law, _csv(args.languages))
    except DataError as e:
        raise DataError(e.reason, path=str(path), field=e.field) from None
    if not concave:
        print(f"note: some fitted {args.law!r} laws are not increasing and concave; using the exact grid search")
    alloc = allocate(curves, args.budget, objective=args.objective, floors=_amounts(args.floor, "--floor"),
                     caps=_amounts(args.cap, "--cap"), step=args.step, concave=concave)
    d = alloc.to_dict()
    print(f"budget {args.budget} ({args.unit}), objective {args.objective}, law {args.law}, {alloc.method}")
    print("| language | allocated | predicted | uniform | predicted (uniform) |\n|---|---|---|---|---|")
    for lang in alloc.amounts:
        print(f"| {lang} | {alloc.amounts[lang]} | {alloc.predicted[lang]:.3f} | {d['uniform']['amounts'][lang]} | "
              f"{d['uniform']['predicted'][lang]:.3f} |")
    uni = d["uniform"]["value"]
    print(f"predicted {args.objective}: {alloc.value:.3f} vs uniform "
          f"{'infeasible' if uni is None else f'{uni:.3f}'}"
          + (f" (gain {d['gain_over_uniform']:+.3f})" if d["gain_over_uniform"] is not None else ""))
    if alloc.unspent:
        print(f"unspent: {alloc.unspent} (caps or step leave it unused)")
    if args.out:
        mix = mixture_config(alloc, dataset_pattern=args.dataset_pattern, unit=args.unit, tokenizer=args.tokenizer,
                             seed=args.seed)
        out = Path(args.out)
        with atomic_open(out) as f:
            f.write(f"# Written by `polyinstruct analyze allocate` from {path} (law {args.law}, objective "
                    f"{args.objective}, budget {args.budget}).\n# Materialize: polyinstruct data mix {out} OUT_DIR\n")
            yaml.safe_dump(mix, f, sort_keys=False, allow_unicode=True)
        write_json(out.with_suffix(".allocation.json"), {**d, "study": str(path), "law": args.law,
                                                          "budget": args.budget, "unit": args.unit})
        print(f"wrote {out} and {out.with_suffix('.allocation.json')}")
    return 0


def cmd_alignment(args: argparse.Namespace) -> int:
    from polyinstruct.analysis.alignment import alignment_table, expand_models, load_pairs, measure_model, plot_alignment
    from polyinstruct.fileio import atomic_open, write_json

    models = expand_models(args.models)
    pairs = load_pairs(_csv(args.languages), flores_dir=args.flores, limit=args.limit)
    results = []
    for label, model in models:
        print(f"[alignment] {label}: {model}", flush=True)
        res = measure_model(model, pairs, batch_size=args.batch_size, max_length=args.max_length,
                            progress=args.progress, dtype=args.dtype)
        res["label"] = label
        results.append(res)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "alignment.json", {"models": results})
    table = alignment_table(results)
    with atomic_open(out / "alignment.md") as f:
        f.write("# Layer-wise alignment\n\n" + table)
    plot = plot_alignment(results, out / "alignment.png")
    print(table)
    print(f"wrote {out / 'alignment.json'}, {out / 'alignment.md'}, {plot}")
    return 0


def register(subparsers) -> dict:
    p = subparsers.add_parser("analyze", help="scaling laws, budget allocation, layer-wise alignment")
    sub = p.add_subparsers(dest="analyze_command", metavar="ANALYSIS")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    s = sub.add_parser("scaling", help="fit scaling laws per language over an experiment's size axis")
    s.add_argument("source", help="experiment directory or results.jsonl with language, size and the metric")
    s.add_argument("--metric", default="chrf", help="results field to fit (default chrf)")
    s.add_argument("--laws", default=None, help="comma-separated laws (default log,power; also log1p)")
    s.add_argument("--arm", default=None, help="the trained arm on the size axis (needed when several)")
    s.add_argument("--languages", default=None, help="comma-separated subset")
    s.add_argument("--bootstrap", choices=("residuals", "cells"), default="residuals")
    s.add_argument("--resamples", type=int, default=500)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None, help="output folder (default EXPERIMENT/analysis)")
    s.set_defaults(func=cmd_scaling)

    a = sub.add_parser("allocate", help="split a data budget across languages from fitted laws")
    a.add_argument("study", help="scaling.json (or its folder, or the experiment directory)")
    a.add_argument("--budget", type=int, required=True, help="examples (or tokens) to split")
    a.add_argument("--law", default="log", help="which fitted law to use (default log, the study's)")
    a.add_argument("--objective", choices=("sum", "min"), default="sum", help="maximise the total or the minimum")
    a.add_argument("--floor", action="append", metavar="LANG=N", help="at least N for LANG (repeatable)")
    a.add_argument("--cap", action="append", metavar="LANG=N", help="at most N for LANG (repeatable)")
    a.add_argument("--step", type=int, default=1, help="allocation granularity (default 1)")
    a.add_argument("--languages", default=None, help="comma-separated subset")
    a.add_argument("--unit", choices=("examples", "tokens"), default="examples")
    a.add_argument("--tokenizer", default=None, help="tokenizer for a token budget's mixture")
    a.add_argument("--dataset-pattern", default="polyinstruct-instruct-{lang}",
                   help="each language's dataset, with {lang} (default: the embedded instructions)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", default=None, help="write the mixture config (YAML) for `polyinstruct data mix`")
    a.set_defaults(func=cmd_allocate)

    g = sub.add_parser("alignment", help="layer-wise cross-lingual alignment of one or more models")
    g.add_argument("models", nargs="+", metavar="MODEL_OR_RUN",
                   help="model paths, packaged names, run dirs, or an experiment dir (its base and trained cells); "
                        "LABEL=PATH names a curve")
    g.add_argument("--languages", default=None, help="comma-separated (default: every embedded en-X pair)")
    g.add_argument("--flores", default=None, help="folder of Flores files to use instead of the embedded pairs")
    g.add_argument("--limit", type=int, default=None, help="first N pairs per language")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--max-length", type=int, default=128)
    g.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="auto: bfloat16 on CPUs with AMX/AVX512-BF16 (about 4x faster; the measures' agreement "
                        "with float32 is in docs/analysis.md), float32 elsewhere")
    g.add_argument("--out", default="runs/alignment", help="output folder")
    g.add_argument("--progress", action="store_true")
    g.set_defaults(func=cmd_alignment)
    # `analyze refscore` is added by polyinstruct.experiment (cli.GROUP_EXTENSIONS): it reads experiment configs.
    return {"analyze": sub}
