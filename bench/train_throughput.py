"""Training throughput: polyinstruct vs TRL's SFTTrainer and a plain length-grouped loop, with MFU.

Arms (each in its own subprocess, so peak RSS is that arm's alone; run one after another):
  polyinstruct          the default mode: packing (each micro-batch is one row, attention per
                        example from its boundaries: exact), LM head only where a label is predicted
  polyinstruct_padded   packing: false (padded micro-batches, length-sorted inside each global batch)
  polyinstruct_grouped  packing: false + group_by_length=30 (a window of 30 global batches sorted by length)
  polyinstruct_bf16     the default + mixed_precision=bf16 (autocast, fp32 master weights)
  plain_grouped         a plain PyTorch loop: a window of 30 global batches sorted by length into
                        micro-batches, step order shuffled (what HF group_by_length does)
  trl_padded            TRL SFTTrainer (padded batches), completion-only loss
  trl_padding_free      TRL SFTTrainer with padding_free=True, completion-only loss
Models: random-init Llamas, vocab 8k, untied head: "7m" (hidden 256, 4 layers, 7.3M params) and
"33m" (hidden 512, 8 layers, 33.5M); "tiny" (hidden 64, 2 layers) for --quick. Data: Alpaca-like
(log-normal prompt/response lengths, long tail), at most 512 tokens, Tulu format; global batch 16
as micro-batch 8 x 2 in every arm; fp32 unless the arm says bf16; 1 thread per arm.

Printed per arm: real (non-pad) tokens/s, loss-bearing tokens/s, MFU = 6 x matmul parameters x
real tokens/s / the matmul peak measured in the arm's own process before and after training
(fp32, or bf16 for the bf16 arm), peak RSS;
then a table and ratios. The last line is one JSON object with every figure. Ratios come from
arms run back to back on the same machine; absolute numbers move with the machine's load
(printed as load_avg_start/end) and, on a shared VM, with its speed, which drifted by up to
+-20% between arms in our runs: ``*_mfu_vs_*`` divides each arm by the matmul peak measured in
its own process, which takes that drift out. For a median of runs: python bench/repeat.py -n 3 bench/train_throughput.py

    python bench/train_throughput.py            # 7m (24 steps) and 33m (8 steps), every arm
    python bench/train_throughput.py --quick    # tiny model, 4 steps, three arms
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
MAX_LENGTH = 512
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


VARIANTS = {  # polyinstruct arms: config overrides on top of the defaults
    "polyinstruct": {},
    "polyinstruct_padded": {"packing": False},
    "polyinstruct_grouped": {"packing": False, "group_by_length": 30},
    "polyinstruct_bf16": {"mixed_precision": "bf16"},
}


def arm_polyinstruct(model: str, data: Path, method: str, steps: int, out: Path, micro: int,
                     variant: dict | None = None) -> dict:
    from polyinstruct.train import train

    cfg = {"model": model, "template": "tulu", "data": [str(data)], "output_dir": str(out), "method": method,
           "global_batch_size": GLOBAL_BATCH, "micro_batch_size": micro, "max_steps": steps, "lr": 1e-4,
           "max_length": MAX_LENGTH, "save_every": 10**9, "seed": 0, "resume": "never", "tokenize_cache": False,
           "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "qkv"}, **(variant or {})}
    t0 = time.perf_counter()
    run = train(cfg)
    total = time.perf_counter() - t0
    b = json.loads((run / "budget.json").read_text())
    return {"train_s": b["wall_time_s"], "total_s": total, "tokens": b["tokens_seen"],
            "loss_tokens": b["loss_tokens"], "steps": b["steps"]}


def arm_plain(model: str, data: Path, method: str, steps: int, out: Path, micro: int, window: int = 30) -> dict:
    """A plain PyTorch loop with HF-style length grouping: a window of ``window`` global batches is
    sorted by length into micro-batches (little padding, no block-diagonal masks), steps are shuffled.
    Same tokenized examples, model, optimizer and loss normalisation (per global batch) as polyinstruct."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from polyinstruct.data import load_dataset
    from polyinstruct.templates import load_template
    from polyinstruct.train.config import TrainConfig
    from polyinstruct.train.data import tokenize

    tok = AutoTokenizer.from_pretrained(model)
    tok.pad_token = tok.pad_token or tok.eos_token
    cfg = TrainConfig.model_validate({"model": model, "data": [str(data)], "output_dir": str(out),
                                      "max_length": MAX_LENGTH})
    exs = tokenize(list(load_dataset(str(data))), tok, load_template("tulu", tok), cfg)
    m = AutoModelForCausalLM.from_pretrained(model)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        m = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM",
                                         target_modules=["q_proj", "k_proj", "v_proj"]))
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
    rng = torch.Generator().manual_seed(0)
    order = torch.randperm(len(exs), generator=rng).tolist()
    w = window * GLOBAL_BATCH
    step_batches = []
    for s in range(0, len(order), w):
        win = sorted(order[s:s + w], key=lambda i: -len(exs[i]["input_ids"]))
        micro_b = [win[j:j + micro] for j in range(0, len(win), micro)]
        k = GLOBAL_BATCH // micro
        step_batches += [micro_b[j:j + k] for j in range(0, len(micro_b), k)]
    step_batches = [step_batches[i] for i in torch.randperm(len(step_batches), generator=rng).tolist()][:steps]
    m.train()
    tokens = loss_tokens = 0
    t0 = time.perf_counter()
    for mbs in step_batches:
        n_loss = sum(exs[i]["num_loss_tokens"] for mb in mbs for i in mb)
        for mb in mbs:
            L = max(len(exs[i]["input_ids"]) for i in mb)
            ids = torch.full((len(mb), L), tok.pad_token_id)
            lab = torch.full((len(mb), L), -100)
            att = torch.zeros((len(mb), L), dtype=torch.long)
            for r, i in enumerate(mb):
                n = len(exs[i]["input_ids"])
                ids[r, :n], lab[r, :n], att[r, :n] = torch.tensor(exs[i]["input_ids"]), torch.tensor(exs[i]["labels"]), 1
                tokens += n
            logits = m(input_ids=ids, attention_mask=att, use_cache=False).logits
            ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), lab[:, 1:].reshape(-1),
                                 ignore_index=-100, reduction="sum")
            (ce / n_loss).backward()
        loss_tokens += n_loss
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    train_s = time.perf_counter() - t0
    return {"train_s": train_s, "total_s": train_s, "tokens": tokens, "loss_tokens": loss_tokens,
            "steps": len(step_batches)}


def arm_trl(model: str, data: Path, method: str, steps: int, out: Path, padding_free: bool, micro: int) -> dict:
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
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=micro,
                     gradient_accumulation_steps=GLOBAL_BATCH // micro, max_steps=steps,
                     num_train_epochs=1, learning_rate=1e-4, max_length=None if padding_free else MAX_LENGTH,
                     completion_only_loss=True,
                     padding_free=padding_free, report_to="none", save_strategy="no", logging_steps=10**6,
                     use_cpu=True, dataloader_num_workers=0, seed=0, disable_tqdm=True,
                     # TRL's configs default to bf16 autocast and activation checkpointing; the polyinstruct
                     # arms run fp32 without checkpointing, so both are switched off here to compare like with like
                     bf16=False, gradient_checkpointing=False)
    clock = Clock()
    trainer = SFTTrainer(model=m, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config,
                         callbacks=[clock])
    seen = {"tokens": 0, "loss_tokens": 0}
    collator = trainer.data_collator

    def counting(features):  # count the real tokens each micro-batch holds (what polyinstruct counts)
        for f in features:
            seen["tokens"] += len(f["input_ids"])
            if f.get("labels") is not None:  # TRL >= 1.x builds labels itself (-100 on the prompt)
                seen["loss_tokens"] += sum(1 for x in f["labels"][1:] if x != -100)
            elif f.get("completion_mask") is not None:
                seen["loss_tokens"] += sum(f["completion_mask"][1:])
            else:
                seen["loss_tokens"] += len(f["input_ids"]) - 1
        return collator(features)

    trainer.data_collator = counting
    if hasattr(trainer, "_train_dataloader"):
        trainer._train_dataloader = None
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    return {"train_s": clock.t1 - clock.t0, "total_s": total, "tokens": seen["tokens"],
            "loss_tokens": seen["loss_tokens"], "steps": trainer.state.global_step}


def run_arm(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = Path(tempfile.mkdtemp(prefix="bench-train-"))
    before = matmul_peak() if args.arm != "peak" else None
    if args.arm == "peak":
        r = matmul_peak()
    elif args.arm in VARIANTS:
        r = arm_polyinstruct(args.model, Path(args.data), args.method, args.steps, out, args.micro, VARIANTS[args.arm])
    elif args.arm == "plain_grouped":
        r = arm_plain(args.model, Path(args.data), args.method, args.steps, out, args.micro)
    else:
        r = arm_trl(args.model, Path(args.data), args.method, args.steps, out, args.arm == "trl_padding_free",
                    args.micro)
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if before is not None:  # the matmul peak this arm's process got, before and after training (load moves)
        after = matmul_peak()
        for k in before:
            r[f"arm_{k}"] = max(before[k], after[k])
        with open(Path(args.data).parent / "arms.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"arm": args.arm, "method": args.method, "model": args.model, **r}) + "\n")
    print("RESULT " + json.dumps(r))


def matmul_peak(n: int = 1024, reps: int = 8) -> dict:
    """Best-of GFLOP/s of an n x n x n matmul in fp32 and bf16 on this machine (the MFU denominator)."""
    import torch

    out = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
        a @ b
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
        out[f"{name}_gflops"] = 2 * n ** 3 / best / 1e9
    return out


SIZES = {  # name -> (hidden, layers): Llama, vocab 8k, untied head, SwiGLU width 43/16 x hidden
    "tiny": (64, 2),
    "7m": (256, 4),
    "33m": (512, 8),
}


def build_model(work: Path, size: str) -> tuple[Path, int]:
    """A random-init Llama of ``size`` (tests' tokenizer); returns (folder, matmul parameters)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from polyinstruct.models.tiny import build_tiny_model, build_tiny_tokenizer

    out = work / f"llama-{size}"
    if size == "tiny":
        build_tiny_model(out)
        from transformers import AutoModelForCausalLM

        m = AutoModelForCausalLM.from_pretrained(str(out))
    else:
        hidden, layers = SIZES[size]
        tok = build_tiny_tokenizer()
        cfg = LlamaConfig(vocab_size=8192, hidden_size=hidden, intermediate_size=hidden * 43 // 16,
                          num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                          max_position_embeddings=2048, tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        torch.manual_seed(0)
        m = LlamaForCausalLM(cfg)
        m.save_pretrained(str(out))
        tok.save_pretrained(str(out))
    matmul = sum(mod.weight.numel() for mod in m.modules() if isinstance(mod, torch.nn.Linear))
    return out, matmul


def fit_lengths(path: Path, model: Path, limit: int) -> None:
    """Shorten answers so every example fits ``limit`` tokens (Alpaca-like lengths up to 512)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        q, a = r["messages"][0]["content"], r["messages"][1]["content"]
        while len(tok(f"<|user|>\n{q}\n<|assistant|>\n{a}")["input_ids"]) > limit - 8:
            words = a.split()
            a = " ".join(words[:max(1, int(len(words) * 0.85))])
        r["messages"][1]["content"] = a
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


ARMS = ("polyinstruct", "polyinstruct_padded", "polyinstruct_grouped", "polyinstruct_bf16", "plain_grouped",
        "trl_padded", "trl_padding_free")


def _run(arm: str, method: str, model: Path, data: Path, steps: int, args, script: str = __file__) -> dict:
    """One arm in its own process (``script --arm ...``, so peak RSS is that arm's alone); its RESULT line."""
    cmd = [sys.executable, script, "--arm", arm, "--method", method, "--model", str(model), "--data", str(data),
           "--steps", str(steps), "--micro", str(args.micro), "--threads", str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    if res.returncode or not line:
        raise SystemExit(f"{arm}/{method} failed:\n{res.stderr[-3000:]}")
    return json.loads(line[0][7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model, 4 steps, three arms (about a minute)")
    ap.add_argument("--sizes", default="7m,33m", help=f"model sizes: {', '.join(SIZES)}")
    ap.add_argument("--steps", default="24,8", help="optimizer steps per arm, per size (global batch 16)")
    ap.add_argument("--micro", type=int, default=8, help="micro-batch size in every arm (global 16 = micro x accumulation)")
    ap.add_argument("--methods", default="full")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads in every arm (0 = torch's default); on a small shared VM two "
                         "threads contend and run tens of times slower than one")
    ap.add_argument("--arm", help=argparse.SUPPRESS)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        args.steps = int(args.steps)
        return run_arm(args)
    if args.quick:
        args.sizes, args.steps, args.arms = "tiny", "4", "polyinstruct,plain_grouped,trl_padding_free"
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    sizes = args.sizes.split(",")
    steps = [int(x) for x in args.steps.split(",")]
    steps = (steps * len(sizes))[:len(sizes)] if len(steps) == 1 else steps
    arms = args.arms.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    peak = _run("peak", "full", work, work, 1, args)
    print(f"matmul peak ({args.threads} thread): fp32 {peak['fp32_gflops']:.1f} GFLOP/s, "
          f"bf16 {peak['bf16_gflops']:.1f} GFLOP/s", flush=True)
    summary: dict[str, float | int | str] = {"global_batch": GLOBAL_BATCH, "micro_batch": args.micro,
                                             "threads": args.threads, "max_length": MAX_LENGTH,
                                             "peak_fp32_gflops": round(peak["fp32_gflops"], 1),
                                             "peak_bf16_gflops": round(peak["bf16_gflops"], 1),
                                             "load_avg_start": round(os.getloadavg()[0], 1)}
    table = []
    for size, n_steps in zip(sizes, steps):
        model, matmul = build_model(work, size)
        data = make_data(work / f"alpaca_like_{size}.jsonl", GLOBAL_BATCH * n_steps)
        fit_lengths(data, model, MAX_LENGTH)
        summary[f"{size}_matmul_params"] = matmul
        summary[f"{size}_steps"] = n_steps
        for method in args.methods.split(","):
            res: dict[str, dict] = {}
            for arm in arms:  # one arm after another, each in its own process (its own peak RSS)
                r = _run(arm, method, model, data, n_steps, args)
                r["tokens_per_s"] = r["tokens"] / r["train_s"]
                r["loss_tokens_per_s"] = r["loss_tokens"] / r["train_s"]
                kind = "bf16_gflops" if arm.endswith("bf16") else "fp32_gflops"
                pk = r.get(f"arm_{kind}", peak[kind])  # the peak measured in the arm's own process
                r["mfu"] = 6 * matmul * r["tokens_per_s"] / (pk * 1e9)
                res[arm] = r
                print(f"{size:4s} {method:4s} {arm:21s} steps {r['steps']:3d} tokens {r['tokens']:7d}  real tok/s "
                      f"{r['tokens_per_s']:8.0f}  loss tok/s {r['loss_tokens_per_s']:7.0f}  MFU {100 * r['mfu']:5.1f}%  "
                      f"peak RSS {r['peak_rss_mb']:6.0f} MB", flush=True)
                key = f"{size}_{method}_{arm}"
                summary[f"{key}_tokens_per_s"] = round(r["tokens_per_s"], 1)
                summary[f"{key}_mfu"] = round(r["mfu"], 4)
                summary[f"{key}_peak_rss_mb"] = round(r["peak_rss_mb"], 1)
            table.append((size, method, res))
            for arm in [a for a in arms if a.startswith("polyinstruct")]:
                for peer in [a for a in arms if not a.startswith("polyinstruct")]:
                    summary[f"{size}_{method}_{arm}_vs_{peer}"] = round(
                        res[arm]["tokens_per_s"] / res[peer]["tokens_per_s"], 3)
                    summary[f"{size}_{method}_{arm}_rss_vs_{peer}"] = round(
                        res[arm]["peak_rss_mb"] / res[peer]["peak_rss_mb"], 3)
                    # the same ratio with each arm's tokens/s divided by the matmul peak measured in
                    # its own process: on a shared VM the machine's speed drifts between arms
                    summary[f"{size}_{method}_{arm}_mfu_vs_{peer}"] = round(res[arm]["mfu"] / res[peer]["mfu"], 3)
    print("\nreal (non-pad) tokens/s, 1 run:")
    print("| model | method | " + " | ".join(arms) + " |")
    print("|---|---|" + "---|" * len(arms))
    for size, method, res in table:
        print(f"| {size} | {method} | " + " | ".join(f"{res[a]['tokens_per_s']:,.0f}" for a in arms) + " |")
    summary["load_avg_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
