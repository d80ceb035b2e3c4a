"""Likelihood scoring through ``polyinstruct serve`` against lm-eval's own ``hf`` backend.

The same multiple-choice task (synthetic "what is A plus B" questions, 4 choices, in lm-eval's
YAML on local JSONL) is scored twice in one process after the imports and model loading:
lm-eval's ``hf`` backend on the loaded model, and lm-eval's ``local-completions`` client (its
defaults: the server's tokenizer, token-id prompts, ``batch_size`` prompts per request) against
``polyinstruct serve``'s app on the same loaded model, on loopback. Accuracy and every
log-likelihood must agree; the figure is hf wall time / server wall time (target >= 0.7: the
server may cost at most ~30% over scoring in process). The runs go hf, serve, serve, hf (so
a machine whose load drifts during the bench favours neither) and the times are summed; the
process's CPU time (client and server both run here) is reported too, the fairer figure on a
machine other jobs keep busy. lm-eval's default remote tokenizer costs the server path one
``/tokenize`` round trip per context and per context + continuation (193 for 96 requests);
``--tokenizer local`` removes them. Measured on a loaded 2-core machine (Gemma, 96
continuations): 0.43-0.55x wall, 0.42-0.51x CPU; a 16-prompt batch costs the server the same CPU
as lm-eval's padded forward + log_softmax (3.0-3.3 s each, measured alternately in one process).
The rest is lm-eval's ``hf`` logits cache: requests whose context + continuation differ only in
the last token (" 43", " 44", " 42" share " 4") share one forward pass there, while every API
request asks for a greedy token after its own full sequence, so the server runs each.

    python bench/serve_scoring.py [--quick] [--model gemma-3-270m] [--items N] [--threads T]

The default model is the packaged Gemma-3-270m (262k vocabulary, needs BOS: the case the
server's BOS handling and batched scoring are for). The last line printed is one JSON object.
Times depend on machine load: say so when reporting.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASK_YAML = """task: serve_scoring_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_task(root: Path, items: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    rows = []
    for i in range(items):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        right = a + b
        choices = [str(c) for c in (right, right + 1, right - 1, right + 10)]
        rng.shuffle(choices)
        rows.append({"question": f"What is {a} plus {b}?", "choices": choices, "label": choices.index(str(right))})
    data = root / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (root / "serve_scoring_mc.yaml").write_text(TASK_YAML.format(data=data), encoding="utf-8")


class Server:
    """uvicorn on a free loopback port, in a thread."""

    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="24 questions (96 scored continuations)")
    ap.add_argument("--model", default="gemma-3-270m", help="packaged model name or model folder")
    ap.add_argument("--items", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=16, help="lm-eval's batch size, both backends")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a busy 2-core machine)")
    ap.add_argument("--tokenizer", choices=("remote", "local"), default="remote",
                    help="lm-eval's tokenizer for the server path: remote (its default, the server's /tokenize) "
                         "or local (tokenizer_backend=huggingface with add_bos_token=True: no round trips)")
    args = ap.parse_args()
    items = 24 if args.quick else args.items

    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from polyinstruct.infer.hf import HFBackend
    from polyinstruct.infer.serve import create_app
    from polyinstruct.models.resolve import resolve_model_path

    path = resolve_model_path(args.model)
    backend = HFBackend.from_path(path, device="cpu", dtype="float32", batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        write_task(Path(tmp), items)
        tm = TaskManager(include_path=tmp, include_defaults=False)

        cpu: dict[str, float] = {"hf": 0.0, "serve": 0.0}

        def evaluate(lm, **kw):
            t0, c0 = time.perf_counter(), time.process_time()  # client and server both run in this process
            out = lm_eval.simple_evaluate(model=lm, tasks=["serve_scoring_mc"], task_manager=tm, log_samples=True,
                                          batch_size=args.batch_size, random_seed=0, numpy_random_seed=0,
                                          torch_random_seed=0, fewshot_random_seed=0, **kw)
            cpu["hf" if not isinstance(lm, str) else "serve"] += time.process_time() - c0
            return out, time.perf_counter() - t0

        hflm = HFLM(pretrained=backend.model, tokenizer=backend.tokenizer, batch_size=args.batch_size)
        times: dict[str, list[float]] = {"hf": [], "serve": []}
        with Server(create_app(backend, model_name="m", max_tokens_limit=64, max_batch_size=args.batch_size)) as s:
            api_args = {"model": "m", "base_url": f"http://127.0.0.1:{s.port}/v1/completions", "num_concurrent": 1,
                        "max_retries": 1}
            if args.tokenizer == "local":
                api_args.update(tokenizer_backend="huggingface", tokenizer=path, add_bos_token=True)
            for which in ("hf", "serve", "serve", "hf"):
                if which == "hf":
                    hf, t = evaluate(hflm)
                else:
                    api, t = evaluate("local-completions", model_args=api_args)
                times[which].append(t)
                print(f"{which}: {t:.1f} s", flush=True)
        hf_s, api_s = sum(times["hf"]), sum(times["serve"])
    acc_hf = hf["results"]["serve_scoring_mc"]["acc,none"]
    acc_api = api["results"]["serve_scoring_mc"]["acc,none"]
    ref = {r["doc_id"]: r for r in hf["samples"]["serve_scoring_mc"]}
    worst, n = 0.0, 0
    for r in api["samples"]["serve_scoring_mc"]:
        for (a, _), (b, _) in zip(r["filtered_resps"], ref[r["doc_id"]]["filtered_resps"]):
            worst = max(worst, abs(float(a) - float(b)) if math.isfinite(float(a)) else math.inf)
            n += 1
    ratio = hf_s / api_s
    runs = {k: " + ".join(f"{t:.1f}" for t in v) for k, v in times.items()}
    print(f"{items} questions, {n} continuations, batch {args.batch_size}, {args.threads} thread(s); two runs each")
    print(f"lm-eval hf backend:           {hf_s:7.1f} s  acc {acc_hf:.3f}  ({runs['hf']})")
    print(f"lm-eval through serve:        {api_s:7.1f} s  acc {acc_api:.3f}  (max |dLL| {worst:.2e}; {runs['serve']})")
    print(f"speed of serve vs hf: {ratio:.2f}x wall (target >= 0.7); CPU time {cpu['hf']:.1f} s vs "
          f"{cpu['serve']:.1f} s: {cpu['hf'] / cpu['serve']:.2f}x (the fairer figure on a loaded machine)")
    print(json.dumps({"bench": "serve_scoring", "model": args.model, "questions": items, "continuations": n,
                      "batch_size": args.batch_size, "threads": args.threads, "runs": "hf, serve, serve, hf",
                      "tokenizer": args.tokenizer,
                      "hf_runs_s": [round(t, 2) for t in times["hf"]],
                      "serve_runs_s": [round(t, 2) for t in times["serve"]],
                      "hf_s": round(hf_s, 2),
                      "serve_s": round(api_s, 2), "ratio": round(ratio, 3), "hf_cpu_s": round(cpu["hf"], 2),
                      "serve_cpu_s": round(cpu["serve"], 2), "cpu_ratio": round(cpu["hf"] / cpu["serve"], 3), "acc_hf": acc_hf, "acc_serve": acc_api,
                      "max_abs_loglik_diff": worst, "same_accuracy": acc_hf == acc_api}))


if __name__ == "__main__":
    main()
