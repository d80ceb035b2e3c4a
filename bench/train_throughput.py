"""Training throughput: polyinstruct vs TRL's SFTTrainer on the same model and data.

Arms (each in its own subprocess, so peak RSS is that arm's alone):
  polyinstruct        the accelerate loop, length-sorted micro-batches inside each global batch
  trl_padded          TRL SFTTrainer defaults (padded batches), completion-only loss
  trl_padding_free    TRL SFTTrainer with padding_free=True, completion-only loss
each for full fine-tuning and LoRA, on a tiny random Llama (tests' tokenizer), an
Alpaca-like length mix (log-normal prompt/response lengths with a long tail),
global batch 16, fp32, one epoch over the same examples.

Printed per arm: real (non-pad) tokens/s, loss-bearing tokens/s, peak RSS, and the
ratios polyinstruct / TRL. The last line is one JSON object with every figure.

    python bench/train_throughput.py            # 40 steps per arm
    python bench/train_throughput.py --quick    # under a minute: 6 steps, full only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GLOBAL_BATCH = 16
WORDS = ("the quick brown fox jumps over lazy dog give three tips for staying healthy explain why sky is blue "
         "write short poem about sea what twelve times seven summarize text long summary hello how can help "
         "def add return print capital city answer question because light scattered air water river mountain").split()


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words)).capitalize() + "."


def make_data(path: Path, n: int, seed: int = 0) -> Path:
    """Alpaca-like: instruction ~12 words, 40% with an input ~20 words, output log-normal (median ~40
    words, long tail to 400), so padded batches waste what they waste on real instruction data."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            prompt = _text(rng, max(3, int(rng.lognormvariate(math.log(12), 0.4))))
            if rng.random() < 0.4:
                prompt += "\n\n" + _text(rng, max(3, int(rng.lognormvariate(math.log(20), 0.7))))
            answer = _text(rng, min(400, max(2, int(rng.lognormvariate(math.log(40), 0.9)))))
            f.write(json.dumps({"id": str(i), "language": "en", "messages": [
                {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}) + "\n")
    return path


def arm_polyinstruct(model: str, data: Path, method: str, steps: int, out: Path, micro: int) -> dict:
    from polyinstruct.train import train

    cfg = {"model": model, "template": "tulu", "data": [str(data)], "output_dir": str(out), "method": method,
           "global_batch_size": GLOBAL_BATCH, "micro_batch_size": micro, "epochs": 1, "lr": 1e-4,
           "max_length": 1024, "save_every": 10**9, "seed": 0, "resume": "never",
           "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "qkv"}}
    t0 = time.perf_counter()
    run = train(cfg)
    total = time.perf_counter() - t0
    b = json.loads((run / "budget.json").read_text())
    return {"train_s": b["wall_time_s"], "total_s": total, "tokens": b["tokens_seen"],
            "loss_tokens": b["loss_tokens"], "steps": b["steps"]}


def arm_trl(model: str, data: Path, method: str, steps: int, out: Path, padding_free: bool) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class Clock(TrainerCallback):
        """Time the training loop only (not trainer construction), like polyinstruct's wall_time_s."""

        def on_train_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_train_end(self, *a, **k):
            self.t1 = time.perf_counter()

    tok = AutoTokenizer.from_pretrained(model)
    rows = [json.loads(x) for x in data.read_text(encoding="utf-8").splitlines()]
    # The same Tulu format polyinstruct renders: prompt "<|user|>\n...\n<|assistant|>\n", completion "answer</s>".
    ds = Dataset.from_list([{"prompt": f"<|user|>\n{r['messages'][0]['content']}\n<|assistant|>\n",
                             "completion": r["messages"][1]["content"] + tok.eos_token} for r in rows])
    m = AutoModelForCausalLM.from_pretrained(model)
    peft_config = None
    if method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj"],
                                 task_type="CAUSAL_LM")
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=GLOBAL_BATCH, gradient_accumulation_steps=1,
                     num_train_epochs=1, learning_rate=1e-4, max_length=None if padding_free else 1024, completion_only_loss=True,
                     padding_free=padding_free, report_to="none", save_strategy="no", logging_steps=10**6,
                     use_cpu=True, dataloader_num_workers=0, seed=0, disable_tqdm=True)
    clock = Clock()
    trainer = SFTTrainer(model=m, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config,
                         callbacks=[clock])
    lens, loss_tok = 0, 0
    for ex in trainer.train_dataset:
        lens += len(ex["input_ids"])
        loss_tok += sum(1 for x in ex["labels"][1:] if x != -100)
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    return {"train_s": clock.t1 - clock.t0, "total_s": total, "tokens": lens, "loss_tokens": loss_tok, "steps": trainer.state.global_step}


def run_arm(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = Path(tempfile.mkdtemp(prefix="bench-train-"))
    if args.arm == "polyinstruct":
        r = arm_polyinstruct(args.model, Path(args.data), args.method, args.steps, out, args.micro)
    else:
        r = arm_trl(args.model, Path(args.data), args.method, args.steps, out, args.arm == "trl_padding_free")
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 steps, full fine-tuning only (< 1 minute)")
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per arm (global batch 16)")
    ap.add_argument("--micro", type=int, default=4, help="polyinstruct micro-batch size")
    ap.add_argument("--methods", default="full,lora")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads in every arm (0 = torch's default); on a small shared VM two "
                         "threads contend and run tens of times slower than one")
    ap.add_argument("--arm", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        return run_arm(args)
    if args.quick:
        args.steps, args.methods = 6, "full"
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    from polyinstruct.models.tiny import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    model = build_tiny_model(work / "tiny-llama")
    data = make_data(work / "alpaca_like.jsonl", GLOBAL_BATCH * args.steps)
    results: dict[str, dict] = {}
    for method in args.methods.split(","):
        for arm in ("polyinstruct", "trl_padded", "trl_padding_free"):
            cmd = [sys.executable, __file__, "--arm", arm, "--method", method, "--model", str(model),
                   "--data", str(data), "--steps", str(args.steps), "--micro", str(args.micro), "--threads", str(args.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
            if res.returncode or not line:
                raise SystemExit(f"{arm}/{method} failed:\n{res.stderr[-3000:]}")
            r = json.loads(line[0][7:])
            r["tokens_per_s"] = r["tokens"] / r["train_s"]
            r["loss_tokens_per_s"] = r["loss_tokens"] / r["train_s"]
            results[f"{method}/{arm}"] = r
            print(f"{method:5s} {arm:17s} steps {r['steps']:3d}  tokens {r['tokens']:7d}  real tok/s {r['tokens_per_s']:8.0f}  "
                  f"loss tok/s {r['loss_tokens_per_s']:8.0f}  peak RSS {r['peak_rss_mb']:7.0f} MB", flush=True)
    summary: dict[str, float | int | str] = {"global_batch": GLOBAL_BATCH, "steps": args.steps, "dtype": "fp32",
                                             "micro_batch": args.micro, "threads": args.threads}
    for method in args.methods.split(","):
        p = results[f"{method}/polyinstruct"]
        for arm in ("trl_padded", "trl_padding_free"):
            t = results[f"{method}/{arm}"]
            ratio = p["tokens_per_s"] / t["tokens_per_s"]
            lratio = p["loss_tokens_per_s"] / t["loss_tokens_per_s"]
            print(f"{method}: polyinstruct / {arm}: real tokens/s x{ratio:.2f}, loss tokens/s x{lratio:.2f}, "
                  f"peak RSS x{p['peak_rss_mb'] / t['peak_rss_mb']:.2f}")
            summary[f"{method}_ratio_vs_{arm}"] = round(ratio, 3)
            summary[f"{method}_loss_token_ratio_vs_{arm}"] = round(lratio, 3)
            summary[f"{method}_rss_ratio_vs_{arm}"] = round(p["peak_rss_mb"] / t["peak_rss_mb"], 3)
        for arm in ("polyinstruct", "trl_padded", "trl_padding_free"):
            r = results[f"{method}/{arm}"]
            summary[f"{method}_{arm}_tokens_per_s"] = round(r["tokens_per_s"], 1)
            summary[f"{method}_{arm}_loss_tokens_per_s"] = round(r["loss_tokens_per_s"], 1)
            summary[f"{method}_{arm}_peak_rss_mb"] = round(r["peak_rss_mb"], 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
