"""Tokenize N Alpaca-like examples with assistant-only labels: polyinstruct vs TRL.

Both sides start from the same generated records and produce input_ids +
labels with the prompt masked (-100):

- polyinstruct: ``tokenize_dataset`` with the ``alpaca`` template (span
  verification on), ``datasets.map`` with ``--num-proc`` workers.
- TRL: ``SFTTrainer._prepare_dataset`` (the trainer's own dataset preparation)
  on a prompt/completion dataset with ``completion_only_loss=True``, same
  ``dataset_num_proc``. The Alpaca prompt string is built for it in the timed
  region, as a user of TRL would have to.

Usage: python bench/tokenize_throughput.py [--quick] [--n 52000] [--num-proc 2] [--mixed]
The last printed line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MIXED_WORDS = ("the quick brown fox jumps over lazy dog give three tips for staying healthy explain why sky is blue "
         "write short poem about sea what is twelve times seven renard rapide chien paresseux zorro perro "
         "быстрая коричневая лиса собака 敏捷的 棕色 狐狸 跳过 懒狗 দ্রুত বাদামী শিয়াল 🙂 café résumé").split()
# Stanford Alpaca's 52K examples are English; --mixed adds Cyrillic, Chinese, Bengali and emoji words
EN_WORDS = tuple(w for w in MIXED_WORDS if w.isascii()) + tuple(
    "a an and to of in is it that for you with on as be this are or by can your from how one use list".split())


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (datasets.map workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def generate(n: int, seed: int = 0, words: tuple[str, ...] = EN_WORDS) -> list[dict]:
    """Alpaca-shaped records: instruction, input (about 40% non-empty), output."""
    rng = random.Random(seed)

    def sent(lo, hi):
        return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi))).capitalize() + "."

    return [{"instruction": sent(5, 25), "input": sent(5, 40) if rng.random() < 0.4 else "",
             "output": " ".join(sent(5, 20) for _ in range(rng.randint(1, 6)))} for _ in range(n)]


def run_polyinstruct(records, tok, num_proc, max_length):
    from polyinstruct.data.records import Conversation, Message
    from polyinstruct.templates import load_template
    from polyinstruct.templates.dataset import tokenize_dataset

    t0, c0 = time.perf_counter(), cpu_seconds()
    convs = [Conversation(str(i), [Message("user", r["instruction"]), Message("assistant", r["output"])],
                          meta={"input": r["input"]} if r["input"] else {}) for i, r in enumerate(records)]
    ds, report = tokenize_dataset(convs, tok, load_template("alpaca", tok), max_length=max_length,
                                  num_proc=num_proc, verify=True)
    return time.perf_counter() - t0, cpu_seconds() - c0, ds, report


def run_trl(records, tok, num_proc, max_length):
    import datasets
    from trl import SFTConfig, SFTTrainer

    from polyinstruct.templates import load_template

    t = load_template("alpaca", tok)
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(output_dir=out, dataset_num_proc=num_proc, max_length=max_length,
                         completion_only_loss=True, report_to=[], shuffle_dataset=False,
                         use_cpu=True, bf16=False)

        class _Self:  # the state _prepare_dataset reads from the trainer
            _tokenizer = tok
            chat_template = None
            completion_only_loss = True

        t0, c0 = time.perf_counter(), cpu_seconds()
        # Stanford Alpaca's prompt strings (same text polyinstruct renders), built in Python
        head_in, head = (t._with_input.default_system, t.spec.default_system)
        rows = [{"prompt": (f"{head_in}\n\n### Instruction:\n{r['instruction']}\n\n### Input:\n{r['input']}\n\n"
                            f"### Response:\n") if r["input"] else
                 f"{head}\n\n### Instruction:\n{r['instruction']}\n\n### Response:\n",
                 "completion": r["output"]} for r in records]
        ds = datasets.Dataset.from_list(rows)
        ds = SFTTrainer._prepare_dataset(_Self(), ds, tok, args, packing=False, formatting_func=None,
                                         dataset_name="train")
        return time.perf_counter() - t0, cpu_seconds() - c0, ds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=52_000)
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--quick", action="store_true", help="5,000 examples (under a minute)")
    ap.add_argument("--mixed", action="store_true", help="multilingual words instead of English (slower to tokenize)")
    a = ap.parse_args(argv)
    n = 5_000 if a.quick else a.n

    import datasets
    from datasets.utils.logging import disable_progress_bar

    from polyinstruct.models.tiny import build_tiny_tokenizer

    disable_progress_bar()
    datasets.disable_caching()
    words = MIXED_WORDS if a.mixed else EN_WORDS
    tok = build_tiny_tokenizer(extra_texts=[" ".join(list(MIXED_WORDS) + list(EN_WORDS))] * 4)
    records = generate(n, words=words)
    print(f"{n} Alpaca-like examples ({'multilingual' if a.mixed else 'English'}), num_proc={a.num_proc}, "
          f"tokenizer: byte-level BPE ({len(tok)} tokens)")

    load = os.getloadavg()[0]
    trl_s, trl_cpu, trl_ds = run_trl(records, tok, a.num_proc, a.max_length)
    print(f"TRL SFTTrainer._prepare_dataset: {trl_s:.2f} s wall, {n / trl_s:,.0f} examples/s "
          f"({n / trl_cpu:,.0f} examples per CPU-second)")
    pi_s, pi_cpu, pi_ds, report = run_polyinstruct(records, tok, a.num_proc, a.max_length)
    print(f"polyinstruct tokenize_dataset:   {pi_s:.2f} s wall, {n / pi_s:,.0f} examples/s "
          f"({n / pi_cpu:,.0f} examples per CPU-second; spans verified)")
    # floor: the tokenizer alone on the same rendered texts (no labels, no verification), batched in Rust
    from polyinstruct.templates import load_template

    t = load_template("alpaca", tok)
    texts = [t.render([{"role": "user", "content": r["instruction"], "input": r["input"]},
                       {"role": "assistant", "content": r["output"]}]) for r in records]
    f0 = time.perf_counter()
    tok.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    floor_s = time.perf_counter() - f0
    print(f"tokenizer alone (encode_batch_fast of the rendered texts): {floor_s:.2f} s, {n / floor_s:,.0f} examples/s")
    load = max(load, os.getloadavg()[0])
    print(f"machine: {os.cpu_count()} cores, 1-min load average up to {load:.1f} during the run "
          "(wall-clock figures are only comparable within one run)")

    # sanity: same number of trained tokens on both sides (answers + EOS)
    trl_loss = sum(sum(1 for x in lab if x != -100) for lab in trl_ds["labels"])
    print(f"loss tokens: polyinstruct {report.loss_tokens:,}, TRL {trl_loss:,}; tokens {report.tokens:,}")
    result = {"bench": "tokenize_throughput", "examples": n, "text": "mixed" if a.mixed else "en", "num_proc": a.num_proc, "cores": os.cpu_count(),
              "load_avg_max": round(load, 2),
              "polyinstruct_examples_per_s": round(n / pi_s, 1), "trl_examples_per_s": round(n / trl_s, 1),
              "polyinstruct_examples_per_cpu_s": round(n / pi_cpu, 1),
              "trl_examples_per_cpu_s": round(n / trl_cpu, 1),
              "tokenizer_only_examples_per_s": round(n / floor_s, 1),
              "speedup_vs_trl": round(trl_s / pi_s, 3), "polyinstruct_s": round(pi_s, 3), "trl_s": round(trl_s, 3),
              "polyinstruct_loss_tokens": report.loss_tokens, "trl_loss_tokens": trl_loss,
              "target_met": bool(n / pi_s >= 5000 and pi_s <= trl_s)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
