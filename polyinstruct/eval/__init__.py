"""Benchmarks on EleutherAI's lm-evaluation-harness: ``polyinstruct eval MODEL --tasks SUITE_OR_TASKS``.

lm-eval is used as a library (``lm_eval.simple_evaluate`` on inline task configs), so
prompts, few-shot sampling, metrics and the results/samples files are the field's.
polyinstruct adds what the studies need on top (docs/evaluation.md):

- a task registry (``TASKS``) and a suite registry (``SUITES``), both with did-you-mean errors;
- each study's protocol as small overrides of lm-eval's bundled task configs
  (few-shot counts, fixed item samples, answer extraction);
- data without the hub: every dataset is read from ``--data-dir`` in its official layout
  (converted once to lm-eval's schema under ``OUT/_data``), or from the hub when online;
- the model as polyinstruct resolves it (hub id, local folder, run dir, run dir with a
  PEFT adapter) rendered with the run's own chat template;
- averages as the studies compute them: a benchmark's score is the mean over its settings,
  a suite's average the equal-weight mean over its benchmarks.

How to add a task
-----------------
A task is an ``EvalTask`` registered in ``TASKS`` at import time of a suite module::

    from polyinstruct.eval.tasks import EvalTask, TASKS, lm_eval_config
    from polyinstruct.eval.data import DataSource, DATASOURCES

    DATASOURCES.register("xquad", DataSource(
        name="xquad", hub="google/xquad", layout="xquad.LANG.json (SQuAD JSON) per language",
        fetch="https://github.com/google-deepmind/xquad", convert=convert_xquad))

    def build_xquad(ctx):            # ctx: polyinstruct.eval.tasks.BuildContext
        out = []
        for lang in LANGS:
            cfg = lm_eval_config(f"xquad_{lang}", "xquad")  # lm-eval's own config (its folder under
                                                            # lm_eval/tasks: indexing only it is fast)
            cfg.update(task=f"xquad_{lang}", num_fewshot=0)  # the study's protocol changes only
            out.append(ctx.use_data(cfg, "xquad", config=lang, splits={"validation": "validation"}))
        return out

    TASKS.register("xquad", EvalTask(name="xquad", benchmark="xquad", setting="0shot",
                   metric="f1", aggregate="macro", build=build_xquad, sources=("xquad",),
                   description="XQuAD, 0-shot, F1 per language"))

- ``build(ctx)`` returns lm-eval inline task configs (dicts). Start from
  ``lm_eval_config(NAME, FOLDER)`` when lm-eval has the task (FOLDER: its folder under
  ``lm_eval/tasks``; without it all ~15,000 bundled configs are indexed, which is slow);
  write the dict yourself otherwise. ``lm_eval_group_tasks(GROUP, FOLDER)`` lists a group.
- Before building, every name in ``sources`` is checked (local copy or reachable hub), so a
  missing dataset fails in a second with the one-line message.
  Python callables are allowed for ``process_docs``/``process_results`` (use
  ``polyinstruct.eval.scoring`` for extraction and F1).
- ``ctx.use_data(cfg, SOURCE, config=..., splits={lm-eval split: converted split})``
  points a config at the local copy (or leaves the hub path when online with no local copy,
  or raises the one-line "fetch X, put it in Y" error).
- ``metric`` is the lm-eval metric name read from each subtask's results (filter ``none``
  unless ``metric_filter`` says otherwise); ``aggregate`` says how subtasks combine: "micro"
  (weighted by items), "macro" (equal weight). Scores are reported x100.
- ``postprocess(samples_by_subtask, ctx) -> {subtask: {"score", "stderr", "n"}}`` replaces
  lm-eval's metric where scoring needs more than lm-eval offers (a classifier, a judge).
- ``higher_is_better`` and ``in_average`` describe the benchmark for the suite average.

How to add a suite
------------------
Put the suite's tasks in ``polyinstruct/eval/suites/NAME.py``, register them and the suite::

    from polyinstruct.eval.tasks import SUITES, Suite
    SUITES.register("crosslingual", Suite("crosslingual", ["xquad", "mlqa", ...], "what it measures"))

and add ``"polyinstruct.eval.suites.NAME"`` to ``SUITE_MODULES`` in ``polyinstruct/eval/tasks.py``.
Document every setting and where it comes from in docs/evaluation.md, and add fixtures in
the dataset's official layout to ``tests/eval/fixtures/`` with an end-to-end test on the tiny model
(see tests/eval/test_tulu.py).
"""

from polyinstruct.eval.tasks import SUITES, TASKS, EvalTask, Suite, resolve_tasks

__all__ = ["SUITES", "TASKS", "EvalTask", "Suite", "resolve_tasks", "evaluate"]


def evaluate(*args, **kwargs):
    """``polyinstruct.eval.run.evaluate`` (imported lazily: lm-eval is an extra)."""
    from polyinstruct.eval.run import evaluate as _evaluate

    return _evaluate(*args, **kwargs)
