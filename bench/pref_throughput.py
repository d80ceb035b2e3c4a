"""DPO training throughput: polyinstruct's preference loop vs TRL's DPOTrainer on the same pairs.

Arms (each in its own subprocess, so peak RSS is that arm's alone; run one after another):
  polyinstruct          objective dpo (sigmoid), the default packing: the 2n sequences of a micro-batch in one
                        row with attention per sequence (exact), LM head only on answer positions; the
                        reference is a frozen copy (full) or the base with the adapter disabled (lora)
  polyinstruct_padded   the same with packing: false (padded [2n, longest] micro-batches)
  trl                   TRL DPOTrainer (sigmoid loss, padded batches; its padding_free falls back to padding
                        in TRL 1.x), reference = a frozen copy (full) or the adapter disabled (lora)
Models, sizes and thread settings as bench/train_throughput.py (random-init Llamas "7m" and "33m";
"tiny" for --quick). Data: Alpaca-like prompts with two answers of log-normal length (chosen and
rejected), at most 512 tokens per sequence, Tulu format; global batch 16 pairs as micro-batch 4 x 4 in
every arm; fp32 and no activation checkpointing in every arm (TRL's configs default to bf16 and
checkpointing: both switched off); 1 thread per arm. Tokens counted: every real (non-pad) token of the chosen and the
rejected sequence, each forward of the policy (the reference's forward is not counted, in either arm).

Printed per arm: real tokens/s (training loop wall time), tokens per CPU-second of the arm's process
(load-robust on a shared machine; ours includes model loading and tokenization) and peak RSS; the last
line is one JSON object with every figure and the ratios polyinstruct / trl (>1 = faster, <1 = less
memory).

    python bench/pref_throughput.py             # 7m (16 steps) and 33m (6 steps), full fine-tuning
    python bench/pref_throughput.py --quick     # tiny model, 3 steps
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
GLOBAL_BATCH = 16
MAX_LENGTH = 512
BETA = 0.1


def make_pairs(path: Path, n: int, seed: int = 0) -> Path:
    from train_throughput import _text

    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            prompt = _text(rng, max(3, int(rng.lognormvariate(math.log(12), 0.4))))
            ans = [_text(rng, min(300, max(2, int(rng.lognormvariate(math.log(40), 0.9))))) for _ in range(2)]
            f.write(json.dumps({"id": str(i), "language": "en", "messages": [{"role": "user", "content": prompt}],
                                "chosen": {"content": ans[0]}, "rejected": {"content": ans[1]}}) + "\n")
    return path


def fit_pairs(path: Path, model: Path, limit: int) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        q = r["messages"][0]["content"]
        for side in ("chosen", "rejected"):
            a = r[side]["content"]
            while len(tok(f"<|user|>\n{q}\n<|assistant|>\n{a}")["input_ids"]) > limit - 8:
                a = " ".join(a.split()[:max(1, int(len(a.split()) * 0.85))])
            r[side]["content"] = a
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def arm_polyinstruct(model: str, data: Path, method: str, steps: int, out: Path, micro: int, packing: bool) -> dict:
    from polyinstruct.train import train

    cfg = {"model": model, "template": "tulu", "data": [str(data)], "output_dir": str(out), "method": method,
           "objective": "dpo", "preference": {"loss": "sigmoid", "beta": BETA}, "packing": packing,
           "global_batch_size": GLOBAL_BATCH, "micro_batch_size": micro, "max_steps": steps, "lr": 1e-5,
           "max_length": MAX_LENGTH, "save_every": 10**9, "seed": 0, "resume": "never", "tokenize_cache": False,
           "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "qkv"}}
    t0, c0 = time.perf_counter(), time.process_time()
    run = train(cfg)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    b = json.loads((run / "budget.json").read_text())
    # cpu_s: the whole train() call (model loading and tokenization included, which only lowers our figure)
    return {"train_s": b["wall_time_s"], "total_s": total, "cpu_s": cpu, "tokens": b["tokens_seen"],
            "steps": b["steps"]}


def arm_trl(model: str, data: Path, method: str, steps: int, out: Path, micro: int) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_train_end(self, *a, **k):
            self.t1, self.c1 = time.perf_counter(), time.process_time()

    tok = AutoTokenizer.from_pretrained(model)
    rows = [json.loads(x) for x in data.read_text(encoding="utf-8").splitlines()]
    # The Tulu format polyinstruct renders: prompt "<|user|>\n...\n<|assistant|>\n", answers "text</s>"
    # (TRL appends the EOS token itself).
    ds = Dataset.from_list([{"prompt": f"<|user|>\n{r['messages'][0]['content']}\n<|assistant|>\n",
                             "chosen": r["chosen"]["content"], "rejected": r["rejected"]["content"]} for r in rows])
    m = AutoModelForCausalLM.from_pretrained(model)
    peft_config = None
    if method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj"],
                                 task_type="CAUSAL_LM")
    args = DPOConfig(output_dir=str(out), per_device_train_batch_size=micro, gradient_accumulation_steps=GLOBAL_BATCH
                     // micro, max_steps=steps, learning_rate=1e-5, max_length=MAX_LENGTH, beta=BETA,
                     loss_type=["sigmoid"], report_to="none", save_strategy="no", logging_steps=10**6, use_cpu=True,
                     dataloader_num_workers=0, seed=0, disable_tqdm=True,
                     # TRL's configs default to bf16 autocast and activation checkpointing; the polyinstruct
                     # arms run fp32 without checkpointing, so both are switched off here to compare like with like
                     bf16=False, gradient_checkpointing=False)
    clock = Clock()
    trainer = DPOTrainer(model=m, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config,
                         callbacks=[clock])
    seen = {"tokens": 0}
    collator = trainer.data_collator

    def counting(features):
        for f in features:
            p = len(f["prompt_ids"])
            seen["tokens"] += 2 * p + len(f["chosen_ids"]) + len(f["rejected_ids"])
        return collator(features)

    trainer.data_collator = counting
    if hasattr(trainer, "_train_dataloader"):
        trainer._train_dataloader = None
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    return {"train_s": clock.t1 - clock.t0, "total_s": total, "cpu_s": clock.c1 - clock.c0, "tokens": seen["tokens"],
            "steps": trainer.state.global_step}


ARMS = ("polyinstruct", "polyinstruct_padded", "trl")


def run_arm(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = Path(tempfile.mkdtemp(prefix="bench-pref-"))
    if args.arm == "trl":
        r = arm_trl(args.model, Path(args.data), args.method, args.steps, out, args.micro)
    else:
        r = arm_polyinstruct(args.model, Path(args.data), args.method, args.steps, out, args.micro,
                             packing=args.arm == "polyinstruct")
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(r))


def _run(arm: str, method: str, model: Path, data: Path, steps: int, args) -> dict:
    from train_throughput import _run as run_in_process

    return run_in_process(arm, method, model, data, steps, args, script=__file__)


def main() -> None:
    from train_throughput import SIZES, build_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model, 3 steps")
    ap.add_argument("--sizes", default="7m,33m", help=f"model sizes: {', '.join(SIZES)}")
    ap.add_argument("--steps", default="16,6", help="optimizer steps per arm, per size (global batch 16 pairs)")
    ap.add_argument("--micro", type=int, default=4, help="pairs per micro-batch in every arm")
    ap.add_argument("--methods", default="full")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arm", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        args.steps = int(args.steps)
        return run_arm(args)
    if args.quick:
        args.sizes, args.steps = "tiny", "3"
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    sizes = args.sizes.split(",")
    steps = [int(x) for x in args.steps.split(",")]
    steps = (steps * len(sizes))[:len(sizes)] if len(steps) == 1 else steps
    arms = args.arms.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-pref-"))
    summary: dict[str, float | int | str] = {"global_batch_pairs": GLOBAL_BATCH, "micro_batch_pairs": args.micro,
                                             "threads": args.threads, "max_length": MAX_LENGTH,
                                             "load_avg_start": round(os.getloadavg()[0], 1)}
    for size, n_steps in zip(sizes, steps):
        model, _ = build_model(work, size)
        data = make_pairs(work / f"pairs_{size}.jsonl", GLOBAL_BATCH * n_steps)
        fit_pairs(data, model, MAX_LENGTH)
        summary[f"{size}_steps"] = n_steps
        for method in args.methods.split(","):
            res = {}
            for arm in arms:
                r = _run(arm, method, model, data, n_steps, args)
                r["tokens_per_s"] = r["tokens"] / r["train_s"]
                r["tokens_per_cpu_s"] = r["tokens"] / r["cpu_s"]
                res[arm] = r
                print(f"{size:4s} {method:4s} {arm:20s} steps {r['steps']:3d} tokens {r['tokens']:7d}  real tok/s "
                      f"{r['tokens_per_s']:8.0f}  tok/CPU-s {r['tokens_per_cpu_s']:8.0f}  peak RSS "
                      f"{r['peak_rss_mb']:6.0f} MB", flush=True)
                key = f"{size}_{method}_{arm}"
                summary[f"{key}_tokens_per_s"] = round(r["tokens_per_s"], 1)
                summary[f"{key}_tokens_per_cpu_s"] = round(r["tokens_per_cpu_s"], 1)
                summary[f"{key}_tokens"] = r["tokens"]
                summary[f"{key}_peak_rss_mb"] = round(r["peak_rss_mb"], 1)
            if "trl" in res:
                for arm in [a for a in arms if a != "trl"]:
                    summary[f"{size}_{method}_{arm}_vs_trl"] = round(res[arm]["tokens_per_s"]
                                                                     / res["trl"]["tokens_per_s"], 3)
                    # the same ratio per CPU-second of each arm's own process: on a shared machine the
                    # wall-clock share each arm gets moves with the other jobs' load
                    summary[f"{size}_{method}_{arm}_cpu_vs_trl"] = round(res[arm]["tokens_per_cpu_s"]
                                                                         / res["trl"]["tokens_per_cpu_s"], 3)
                    summary[f"{size}_{method}_{arm}_rss_vs_trl"] = round(res[arm]["peak_rss_mb"]
                                                                         / res["trl"]["peak_rss_mb"], 3)
    summary["load_avg_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
