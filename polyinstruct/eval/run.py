"""Run tasks through ``lm_eval.simple_evaluate`` and write what it returns, plus the study averages.

Output folder (``--out``)::

    OUT/TASK/results.json          lm-eval's results object (configs, versions, n-shot, metrics)
    OUT/TASK/samples_SUBTASK.jsonl lm-eval's per-sample log (prompt, response, filtered answer, metric)
    OUT/TASK/summary.json          polyinstruct's score for the task (x100), its stderr, per subtask
    OUT/summary.json, summary.md   every task, the benchmark scores and the suite average
    OUT/_data/                     local datasets converted to lm-eval's schema

A task whose ``summary.json`` exists with the same fingerprint (model, backend, template,
limit, task configs, lm-eval version) is not run again: an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from polyinstruct.errors import ConfigError, MissingDependencyError
from polyinstruct.eval.models import LoadedModel, load_model
from polyinstruct.eval.scoring import benchmark_scores, mean_stderr, suite_average
from polyinstruct.eval.tasks import BuildContext, EvalTask, resolve_tasks, task_manager
from polyinstruct.fileio import atomic_open, write_json

log = logging.getLogger(__name__)

BOOTSTRAP_ITERS = 1000  # stderr of non-mean metrics (lm-eval's bootstrap); means use the analytic form


def _jsonable(obj: Any) -> Any:
    from lm_eval.utils import handle_non_serializable

    return json.loads(json.dumps(obj, default=handle_non_serializable, ensure_ascii=False))


def _cfg_key(obj: Any) -> Any:
    if callable(obj):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"
    return str(obj)


def fingerprint(task: EvalTask, configs: list[dict[str, Any]], loaded: LoadedModel, model: str,
                limit: int | None) -> str:
    import lm_eval

    payload = {"task": task.name, "configs": configs, "model": model, "backend": loaded.info.get("backend"),
               "template": loaded.template, "chat": loaded.chat, "limit": limit,
               "lm_eval": getattr(lm_eval, "__version__", "")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=_cfg_key).encode()).hexdigest()[:16]


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def subtask_scores(task: EvalTask, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{subtask: {score, stderr, n}} read from lm-eval's results (0..1 scale)."""
    key = f"{task.metric},{task.metric_filter}"
    out = {}
    for sub, res in results["results"].items():
        if key not in res:
            raise ConfigError(f"task {task.name}: lm-eval reported no {key!r} for {sub} "
                              f"(has: {', '.join(k for k in res if ',' in k)})")
        n = results.get("n-samples", {}).get(sub, {}).get("effective")
        out[sub] = {"score": _num(res[key]), "stderr": _num(res.get(f"{task.metric}_stderr,{task.metric_filter}")),
                    "n": n}
        also = {m: {"score": _num(res.get(f"{m},{task.metric_filter}")),
                    "stderr": _num(res.get(f"{m}_stderr,{task.metric_filter}"))} for m in task.also}
        if also:
            out[sub]["also"] = also
    return out


def combine_also(task: EvalTask, subs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The metrics reported beside the score (``task.also``), combined over subtasks as the score is
    (x100): {metric: {score, stderr}}; a metric some subtask lacks is left out."""
    out = {}
    for m in task.also:
        rows = {k: {"score": v["also"][m]["score"], "stderr": v["also"][m]["stderr"], "n": v.get("n")}
                for k, v in subs.items() if v.get("score") is not None and m in (v.get("also") or {})}
        if not rows or len(rows) != sum(v.get("score") is not None for v in subs.values()) or \
                any(r["score"] is None for r in rows.values()):
            continue
        score, se, _ = combine(task, rows)
        out[m] = {"score": None if score is None else 100 * score, "stderr": None if se is None else 100 * se}
    return out


def combine(task: EvalTask, subs: dict[str, dict[str, Any]]) -> tuple[float | None, float | None, int]:
    """The task's score over its subtasks: item-weighted ("micro") or equal-weight ("macro")."""
    rows = [s for s in subs.values() if s["score"] is not None]
    if not rows:
        return None, None, 0
    n_total = sum(int(s["n"] or 0) for s in rows)
    if task.aggregate == "micro" and n_total:
        score = sum(s["score"] * int(s["n"] or 0) for s in rows) / n_total
        ses = [s["stderr"] for s in rows]
        se = None if any(v is None for v in ses) else \
            math.sqrt(sum((v * int(s["n"] or 0)) ** 2 for v, s in zip(ses, rows))) / n_total  # type: ignore[operator]
        return score, se, n_total
    score, se = mean_stderr([(s["score"], s["stderr"]) for s in rows])
    return score, se, n_total


def _write_samples(task_dir: Path, samples: dict[str, list[dict[str, Any]]]) -> None:
    from lm_eval.utils import handle_non_serializable

    for sub, rows in samples.items():
        with atomic_open(task_dir / f"samples_{sub}.jsonl") as f:
            for r in rows:
                f.write(json.dumps(r, default=handle_non_serializable, ensure_ascii=False))
                f.write("\n")


_ENV_INFO: dict[str, Any] = {}


def _simple_evaluate(**kw: Any) -> dict[str, Any]:
    """``lm_eval.simple_evaluate`` with its environment report (torch's collect_env, which runs
    several subprocesses) gathered once per process instead of once per task."""
    import lm_eval
    import lm_eval.evaluator as ev

    original = ev.add_env_info

    def cached(storage: dict[str, Any]) -> None:
        if not _ENV_INFO:
            original(_ENV_INFO)
        storage.update(_ENV_INFO)

    ev.add_env_info = cached
    try:
        return lm_eval.simple_evaluate(**kw)
    finally:
        ev.add_env_info = original


def run_task(task: EvalTask, configs: list[dict[str, Any]], loaded: LoadedModel, ctx: BuildContext, *,
             out: Path, model: str, limit: int | None, seed: int = 1234, resume: bool = True) -> dict[str, Any]:
    task_dir = out / task.name
    fp = fingerprint(task, configs, loaded, model, limit)
    done = task_dir / "summary.json"
    if resume and done.is_file():
        try:
            prev = json.loads(done.read_text(encoding="utf-8"))
            if prev.get("fingerprint") == fp:
                log.info("%s: done before (%s), not run again", task.name, done)
                return prev
        except (OSError, ValueError):
            pass
    t0 = time.perf_counter()
    res = _simple_evaluate(model=loaded.lm, tasks=configs, task_manager=task_manager(""), limit=limit,
                                  log_samples=True, apply_chat_template=loaded.chat, fewshot_as_multiturn=False,
                                  bootstrap_iters=BOOTSTRAP_ITERS, random_seed=seed, numpy_random_seed=seed,
                                  torch_random_seed=seed, fewshot_random_seed=seed)
    wall = time.perf_counter() - t0
    samples = res.pop("samples", {}) or {}
    _write_samples(task_dir, samples)
    write_json(task_dir / "results.json", _jsonable(res))
    if task.postprocess is not None:
        subs = task.postprocess(samples, ctx)
    else:
        subs = subtask_scores(task, res)
    score, se, n = combine(task, subs)
    row = {"task": task.name, "benchmark": task.benchmark, "setting": task.setting,
           "metric": task.metric, "score": None if score is None else 100 * score,
           "stderr": None if se is None else 100 * se, "n": n, "also": combine_also(task, subs),
           "higher_is_better": task.higher_is_better, "in_average": task.in_average,
           "subtasks": {k: {**v, "score": None if v["score"] is None else 100 * v["score"],
                            "stderr": None if v.get("stderr") is None else 100 * v["stderr"],
                            **({"also": {m: {"score": None if a["score"] is None else 100 * a["score"],
                                             "stderr": None if a["stderr"] is None else 100 * a["stderr"]}
                                         for m, a in v["also"].items()}} if v.get("also") else {})}
                        for k, v in subs.items()},
           "fingerprint": fp, "wall_s": round(wall, 3), "chat": loaded.chat, "template": loaded.template}
    write_json(done, row)
    return row


def evaluate(model: str | LoadedModel, tasks: str | list[str], *, out: str | Path, data_dir: str | Path | None = None,
             limit: int | None = None, backend: str = "hf", backend_options: dict[str, Any] | None = None,
             task_options: dict[str, Any] | None = None, seed: int = 1234, resume: bool = True,
             model_name: str | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on suites/tasks; returns (and writes) the summary. See the module docstring."""
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}", field="--limit")
    try:
        import lm_eval  # noqa: F401
    except ImportError as e:
        from polyinstruct.eval.tasks import INSTALL_HINT

        raise MissingDependencyError(f"polyinstruct eval needs lm-eval: {INSTALL_HINT} ({e})") from None
    task_list, missing = resolve_tasks(tasks)
    for m in missing:
        log.warning("task %s is not available in this checkout; it is left out (listed in summary.json)", m)
    out = Path(out)
    ddir = Path(data_dir).expanduser() if data_dir else None
    if ddir is not None and not ddir.is_dir():
        raise ConfigError(f"{ddir} is not a folder", field="--data-dir")
    model_label = model_name or (model.name if isinstance(model, LoadedModel) else str(model))
    ctx = BuildContext(data_dir=ddir, work_dir=out / "_data", limit=limit, options=dict(task_options or {}),
                       model=model_label)
    # Everything that can fail without the model fails first: data, classifiers, judges.
    built: dict[str, list[dict[str, Any]]] = {}
    from polyinstruct.eval.data import check_sources

    for t in task_list:
        check_sources(t.sources, ctx)
    for t in task_list:
        if t.check is not None:
            t.check(ctx)
        built[t.name] = t.build(ctx)
        cap = ctx.options.get("max_new_tokens")
        if cap:  # smoke runs and tests: cap every generation (the score is then not the protocol's)
            for cfg in built[t.name]:
                gk = cfg.get("generation_kwargs")
                if isinstance(gk, dict):
                    gk["max_gen_toks"] = min(int(cap), int(gk.get("max_gen_toks", cap)))
    loaded = model if isinstance(model, LoadedModel) else load_model(str(model), backend, **(backend_options or {}))
    log.info("model %s, template %s (%s), chat prompts %s", model_label, loaded.template or "-",
             loaded.template_source, "on" if loaded.chat else "off")
    rows = []
    for i, t in enumerate(task_list, 1):
        log.info("[%d/%d] %s", i, len(task_list), t.name)
        rows.append(run_task(t, built[t.name], loaded, ctx, out=out, model=model_label, limit=limit, seed=seed,
                             resume=resume))
    bench = benchmark_scores(rows)
    summary = {"model": model_label, "backend": loaded.info.get("backend"), "template": loaded.template,
               "template_source": loaded.template_source, "chat": loaded.chat, "limit": limit,
               "task_options": {k: v for k, v in ctx.options.items() if isinstance(v, (str, int, float))},
               "tasks": rows, "benchmarks": bench, "average": suite_average(bench), "unavailable": missing}
    write_json(out / "summary.json", summary)
    with atomic_open(out / "summary.md") as f:
        f.write(render_summary(summary))
    return summary


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def render_summary(summary: dict[str, Any]) -> str:
    lines = [f"# Benchmarks: {summary['model']}", "",
             f"template: {summary['template'] or '-'} ({summary['template_source']}), chat prompts: "
             f"{'on' if summary['chat'] else 'off'}, limit: {summary['limit'] or 'none'}", "",
             "| task | benchmark | setting | metric | score | stderr | n |", "|---|---|---|---|---|---|---|"]
    for r in summary["tasks"]:
        lines.append(f"| {r['task']} | {r['benchmark']} | {r['setting']} | {r['metric']} | {_fmt(r['score'])} | "
                     f"{_fmt(r['stderr'])} | {r['n']} |")
        for m, a in (r.get("also") or {}).items():  # beside the study's metric (docs/evaluation.md)
            lines.append(f"| {r['task']} | {r['benchmark']} | {r['setting']} | {m} | {_fmt(a['score'])} | "
                         f"{_fmt(a['stderr'])} | {r['n']} |")
    lines += ["", "| benchmark | score | stderr | in average |", "|---|---|---|---|"]
    for b, v in sorted(summary["benchmarks"].items()):
        arrow = "" if v["higher_is_better"] else " (lower is better)"
        lines.append(f"| {b}{arrow} | {_fmt(v['score'])} | {_fmt(v['stderr'])} | {'yes' if v['in_average'] else 'no'} |")
        for m, a in (v.get("also") or {}).items():
            lines.append(f"| {b} ({m}) | {_fmt(a['score'])} | {_fmt(a['stderr'])} | no |")
    avg = summary.get("average")
    if avg:
        lines += ["", f"Average (equal weight over {', '.join(avg['benchmarks'])}): {_fmt(avg['score'])} "
                      f"(stderr {_fmt(avg['stderr'])})"]
    if summary.get("unavailable"):
        lines += ["", f"Not available in this checkout: {', '.join(summary['unavailable'])}"]
    return "\n".join(lines) + "\n"
