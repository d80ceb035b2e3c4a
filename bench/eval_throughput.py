"""`polyinstruct eval` against the plain `lm_eval` command on the same model, task and data.

Two comparisons, `--repeats` times each (the faster wall time counts):
1. commands: `polyinstruct eval` and `python -m lm_eval run` as fresh processes (imports,
   model loading, data loading, evaluation and the per-sample logs all count; the plain
   command also indexes all of lm-eval's ~15,000 bundled task configs, polyinstruct only the
   folder its task needs);
2. in one process after the imports: `polyinstruct.eval.run.evaluate` against
   `lm_eval.simple_evaluate(model="hf", ...)` on the same inline task configs: the cost of
   polyinstruct's layer around the evaluation itself. The task is MMLU 5-shot (lm-eval's `mmlu_SUBJECT` configs, the study's
setting) on synthetic questions written in MMLU's official CSV layout; the plain run reads
the same converted JSONL through a task YAML that `include:`s lm-eval's own config. Scores
must be identical per subject; the overhead target is at most 10%.

    python bench/eval_throughput.py [--quick] [--model DIR] [--items N] [--repeats R]

The last line printed is one JSON object. Times depend on machine load: say so when reporting.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUBJECTS = ["anatomy", "astronomy"]


def write_mmlu(root: Path, items: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for split, n in (("dev", 5), ("test", items)):
        (root / "mmlu" / "data" / split).mkdir(parents=True, exist_ok=True)
        for subject in SUBJECTS:
            rows = []
            for i in range(n):
                a, b = rng.randint(2, 60), rng.randint(2, 60)
                right = a + b
                choices = [right, right + 1, right - 1, right + 10]
                rng.shuffle(choices)
                q = f"In {subject} class question {i}: what is {a} plus {b}?"
                rows.append([q, *map(str, choices), "ABCD"[choices.index(right)]])
            with open(root / "mmlu" / "data" / split / f"{subject}_{split}.csv", "w", newline="",
                      encoding="utf-8") as f:
                csv.writer(f).writerows(rows)


def run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-3000:] + p.stderr[-3000:])
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}")
    return wall


def plain_yaml(task_dir: Path, converted: Path) -> list[str]:
    """Task YAMLs for the plain lm_eval run: lm-eval's own config + the same local JSONL."""
    import lm_eval

    base = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    names = []
    for subject in SUBJECTS:
        name = f"tulu_mmlu_5shot_{subject}"
        files = {"test": str(converted / subject / "test.jsonl"), "dev": str(converted / subject / "dev.jsonl")}
        text = (f"include: {base / f'mmlu_{subject}.yaml'}\n"
                f"task: {name}\n"
                "tag: []\n"
                "dataset_path: json\n"
                "dataset_name: null\n"
                f"dataset_kwargs:\n  data_files: {json.dumps(files)}\n"
                "num_fewshot: 5\n")
        (task_dir / f"{name}.yaml").write_text(text, encoding="utf-8")
        names.append(name)
    return names


def plain_scores(out: Path) -> dict[str, float]:
    found = sorted(out.rglob("results_*.json"))
    if not found:
        raise SystemExit(f"no lm_eval results under {out}")
    res = json.loads(found[-1].read_text(encoding="utf-8"))["results"]
    return {k: v["acc,none"] for k, v in res.items()}


def in_process(model: str, tmp: Path, repeats: int, batch_size: int) -> tuple[float, float, tuple[dict, dict]]:
    import copy

    import lm_eval
    from lm_eval.tasks import TaskManager

    from polyinstruct.eval.run import evaluate
    from polyinstruct.eval.tasks import BuildContext, TASKS, load_suites

    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    load_suites()
    subjects = ",".join(SUBJECTS)
    ctx = BuildContext(data_dir=tmp / "data", work_dir=tmp / "inproc_data", options={"mmlu_subjects": subjects})
    configs = TASKS.get("tulu_mmlu_5shot").build(ctx)
    poly_t, plain_t = [], []
    poly_s = plain_s = {}
    for r in range(repeats):
        t0 = time.perf_counter()
        summ = evaluate(model, "tulu_mmlu_5shot", out=tmp / f"inproc_poly{r}", data_dir=tmp / "data",
                        task_options={"mmlu_subjects": subjects},
                        backend_options={"chat": "off", "batch_size": batch_size, "dtype": "float32", "device": "cpu"})
        poly_t.append(time.perf_counter() - t0)
        poly_s = {k: v["score"] / 100 for k, v in summ["tasks"][0]["subtasks"].items()}
        t0 = time.perf_counter()
        res = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": model, "dtype": "float32"},
                                      tasks=copy.deepcopy(configs), batch_size=batch_size, device="cpu",
                                      task_manager=TaskManager(include_defaults=False), log_samples=True,
                                      bootstrap_iters=1000, fewshot_as_multiturn=False)
        plain_t.append(time.perf_counter() - t0)
        plain_s = {k: v["acc,none"] for k, v in res["results"].items()}
    return min(poly_t), min(plain_t), (poly_s, plain_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 questions per subject, one run each")
    ap.add_argument("--model", help="model folder (default: the tiny test model, built here)")
    ap.add_argument("--items", type=int, default=150, help="test questions per subject (default 150)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    items, repeats = (20, 1) if args.quick else (args.items, args.repeats)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="eval_bench_") as tmp:
        tmp = Path(tmp)
        model = args.model
        if not model:
            from polyinstruct.models.tiny import build_tiny_model

            model = str(build_tiny_model(tmp / "tiny"))
        write_mmlu(tmp / "data", items)
        subjects = ",".join(SUBJECTS)
        poly_times, plain_times = [], []
        poly_scores = plain = None
        for r in range(repeats):
            out = tmp / f"poly{r}"
            poly_times.append(run([sys.executable, "-m", "polyinstruct", "eval", model, "--tasks", "tulu_mmlu_5shot",
                                   "--data-dir", str(tmp / "data"), "--out", str(out), "--chat", "off",
                                   "--batch-size", str(args.batch_size), "--dtype", "float32",
                                   "--task-option", f"mmlu_subjects={subjects}"], env))
            summ = json.loads((out / "tulu_mmlu_5shot" / "summary.json").read_text(encoding="utf-8"))
            poly_scores = {k: v["score"] / 100 for k, v in summ["subtasks"].items()}
            task_dir = tmp / "plain_tasks"
            task_dir.mkdir(exist_ok=True)
            names = plain_yaml(task_dir, out / "_data" / "mmlu")
            pout = tmp / f"plain{r}"
            plain_times.append(run([sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
                                    f"pretrained={model},dtype=float32", "--tasks", ",".join(names),
                                    "--include_path", str(task_dir), "--batch_size", str(args.batch_size),
                                    "--output_path", str(pout), "--log_samples", "--seed", "1234",
                                    "--device", "cpu"], env))
            plain = plain_scores(pout)
        # In one process, after the imports: the evaluation itself through polyinstruct (model resolution,
        # configs, conversion check, files) against lm_eval.simple_evaluate on the same inline configs.
        inproc_poly, inproc_plain, ip_scores = in_process(model, tmp, repeats, args.batch_size)
    identical = poly_scores == plain
    poly_best, plain_best = min(poly_times), min(plain_times)
    overhead = poly_best / plain_best - 1
    print(f"polyinstruct eval: {poly_best:.1f} s   lm_eval: {plain_best:.1f} s   overhead {overhead:+.1%}")
    print(f"scores polyinstruct {poly_scores}\nscores lm_eval      {plain}")
    ip_overhead = inproc_poly / inproc_plain - 1
    print(f"in one process: polyinstruct evaluate {inproc_poly:.1f} s   lm_eval.simple_evaluate {inproc_plain:.1f} s"
          f"   overhead {ip_overhead:+.1%}   identical scores: {ip_scores[0] == ip_scores[1]}")
    print(json.dumps({"bench": "eval_throughput", "task": "tulu_mmlu_5shot", "subjects": SUBJECTS,
                      "items_per_subject": items, "repeats": repeats, "model": args.model or "tiny",
                      "polyinstruct_s": round(poly_best, 2), "lm_eval_s": round(plain_best, 2),
                      "polyinstruct_runs_s": [round(t, 2) for t in poly_times],
                      "lm_eval_runs_s": [round(t, 2) for t in plain_times],
                      "overhead": round(overhead, 4), "overhead_target": 0.10,
                      "in_process_polyinstruct_s": round(inproc_poly, 2), "in_process_lm_eval_s": round(inproc_plain, 2),
                      "in_process_overhead": round(ip_overhead, 4),
                      "within_target": overhead <= 0.10 and ip_overhead <= 0.10,
                      "identical_scores": identical and ip_scores[0] == ip_scores[1] == poly_scores, "scores": poly_scores,
                      "load_avg_1m": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
