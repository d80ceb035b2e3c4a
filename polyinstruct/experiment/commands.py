"""CLI: ``polyinstruct experiment CONFIG [key=value ...]`` and ``polyinstruct quickstart``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any


def register(sub) -> None:
    p = sub.add_parser("experiment", help="run a budget-controlled experiment grid end to end",
                       description="Build the arms' data, train each arm, generate answers to the evaluation "
                                   "prompts, score them (language ID, chrF, optional judge) and write the report, "
                                   "from one YAML config (docs/experiments.md). Rerunning resumes: finished cells "
                                   "are skipped.")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. eval.max_new_tokens=32")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--executor", default=None, help="where cells run: local | ray | slurm (sets executor.name; "
                   "docs/clusters.md)")
    p.set_defaults(func=_experiment)
    q = sub.add_parser("quickstart", help="the built-in multilingual experiment (about 5 min on an idle 2-core CPU)",
                       description="Seed 1's experiment on a built-in config: prepare Gemma-3-270m, train an "
                                   "English-only, a multilingual and a downsampled multilingual LoRA, answer the "
                                   "evaluation prompts in 8 languages with the base model and each arm, score and "
                                   "report (runs/quickstart/report/report.html). About 5 min on an idle 2-core CPU "
                                   "with bf16 (AMX), 8 min in float32, longer on a busy machine; peak memory about "
                                   "7 GB. Set HF_HUB_OFFLINE=1 on a machine without network.")
    q.add_argument("overrides", nargs="*", help="key=value overrides of the quickstart config")
    q.add_argument("--output-dir", default=None)
    q.add_argument("--print-config", action="store_true", help="print the quickstart config and exit")
    q.set_defaults(func=_quickstart)


def _quiet_libraries() -> None:
    for name in ("transformers", "datasets", "httpx", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _experiment(args) -> int:
    from polyinstruct.experiment.runner import run_experiment

    _quiet_libraries()
    overrides = list(args.overrides) + ([f"executor.name={args.executor}"] if args.executor else [])
    root = run_experiment(args.config, overrides, progress=True, report=not args.no_report)
    print(f"experiment: {root}")
    if not args.no_report:
        print(f"report: {root / 'report' / 'report.html'}")
    return 0


def _quickstart(args) -> int:
    from polyinstruct.experiment.quickstart import QUICKSTART_CONFIG, quickstart

    if args.print_config:
        print(QUICKSTART_CONFIG.read_text(encoding="utf-8"))
        return 0
    _quiet_libraries()
    t0 = time.time()
    report = quickstart(args.output_dir, args.overrides, progress=True)
    print(f"quickstart finished in {time.time() - t0:.0f} s")
    print(f"report: {report.resolve()}")
    return 0


def cmd_refscore(args: argparse.Namespace) -> int:
    from polyinstruct.experiment.refscore import reference_logprobs

    rows = reference_logprobs(args.experiment, progress=args.progress)
    print("| cell | language | size | n | ref_logprob |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cell']} | {r['language']} | {r['size']} | {r['n']} | {r['ref_logprob']:.4f} |")
    print(f"wrote {Path(args.experiment) / 'analysis' / 'ref_logprob.jsonl'}")
    return 0


def register_refscore(sub: Any) -> None:
    """Add ``refscore`` to the ``polyinstruct analyze`` subcommands."""
    r = sub.add_parser("refscore", help="mean log-probability of the reference answers per cell and language")
    r.add_argument("experiment", help="experiment directory (cells with a model and eval prompts)")
    r.add_argument("--progress", action="store_true")
    r.set_defaults(func=cmd_refscore)
