"""``polyinstruct eval``: benchmark a model or run on suites/tasks (docs/evaluation.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from polyinstruct.errors import ConfigError


def _options(pairs: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {p!r}", field=flag)
        out[key.strip()] = value
    return out


def _task_options(args: argparse.Namespace) -> dict:
    opts: dict = _options(args.task_option, "--task-option")
    if getattr(args, "allow_code_execution", False):  # HumanEval: docs/evaluation.md, "Running generated code"
        opts["allow_code_execution"] = True
    return opts


def list_tasks() -> str:
    from polyinstruct.eval.tasks import SUITES, TASKS, load_suites

    load_suites()
    lines = ["suites:"]
    for name, s in SUITES.items():
        lines.append(f"  {name}: {', '.join(s.tasks)}")
    lines.append("tasks:")
    for name, t in TASKS.items():
        lines.append(f"  {name:32s} {t.benchmark}/{t.setting}: {t.description}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    if args.list:
        print(list_tasks())
        return 0
    if not args.model or not args.tasks:
        raise ConfigError("give MODEL and --tasks (or --list)")
    from polyinstruct.eval.run import evaluate

    backend_options = {"template": args.template, "chat": args.chat, "batch_size": args.batch_size,
                       "device": args.device, "dtype": args.dtype, "max_length": args.max_length,
                       "base_url": args.base_url, "tokenizer": args.tokenizer}
    out = Path(args.out) if args.out else Path("eval") / Path(str(args.model).rstrip("/")).name
    summary = evaluate(args.model, args.tasks, out=out, data_dir=args.data_dir, limit=args.limit,
                       backend=args.backend, backend_options={k: v for k, v in backend_options.items() if v is not None},
                       task_options=_task_options(args), seed=args.seed,
                       resume=not args.no_resume, model_name=args.model_name)
    from polyinstruct.eval.run import render_summary

    print(render_summary(summary), end="")
    print(f"results: {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="benchmarks on lm-evaluation-harness (suites: tulu, ...; --list)")
    p.add_argument("model", nargs="?", help="hub id, local model folder, run dir (full or PEFT adapter), or "
                                            "the served model's name with --backend openai")
    p.add_argument("--tasks", help="comma-separated suites and/or tasks (see --list)")
    p.add_argument("--list", action="store_true", help="list suites and tasks and exit")
    p.add_argument("--data-dir", help="folder with each dataset in its official layout, one subfolder per "
                                      "dataset (docs/evaluation.md); default: the hub (online only)")
    p.add_argument("--limit", type=int, help="only the first N items of each (sub)task")
    p.add_argument("--out", help="results folder (default eval/MODEL_NAME)")
    p.add_argument("--backend", default="hf", help="hf (default), vllm or openai")
    p.add_argument("--base-url", help="openai backend: the /v1/completions URL")
    p.add_argument("--tokenizer", help="openai backend: tokenizer (hub id or folder) for likelihood tasks")
    p.add_argument("--template", help="chat template name or template.yaml (default: the run's, else the "
                                      "tokenizer's, docs/inference.md)")
    p.add_argument("--chat", default="auto", choices=["auto", "on", "off"],
                   help="render prompts with the template: auto = when the model has its own template")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--dtype", help="float32, bfloat16, float16 or auto")
    p.add_argument("--max-length", type=int, help="context length (default: the model's)")
    p.add_argument("--task-option", action="append", metavar="KEY=VALUE",
                   help="task options, e.g. toxigen_classifier=DIR, judge=SPEC (docs/evaluation.md)")
    p.add_argument("--allow-code-execution", action="store_true",
                   help="run model-written code (HumanEval) in polyinstruct's bubblewrap sandbox: no network, no "
                        "host files, CPU/memory/file/process/output limits (docs/evaluation.md, "
                        "'Running generated code')")
    p.add_argument("--model-name", help="name in the summary (default: MODEL)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--no-resume", action="store_true", help="rerun tasks already done in --out")
    p.set_defaults(func=_run)
