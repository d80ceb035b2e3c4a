"""Throughput and peak memory of layer-wise alignment (polyinstruct analyze alignment).

1,000 English-X sentence pairs (the embedded en-fr/es/ru/bg/zh pairs, 200 each: 200 distinct
English sentences and 1,000 translations, so 1,200 sentences, as ``analyze alignment`` embeds
each English sentence once) go through every layer of SmolLM2-135M on the CPU. ``ours`` is
``analysis.alignment.pooled_hidden_states``: length-sorted batches, inference mode, the
decoder without its LM head, each layer's states mean-pooled as soon as the batch returns
(``ours-bf16``: the same in bfloat16, fast on CPUs with AMX). The peer, measured the
same way in the same run, is the naive loop: one sentence at a time with
``output_hidden_states=True`` under ``torch.no_grad()``, every layer's full states kept
until the end, then pooled. Each variant runs in its own process so that peak RSS
(``ru_maxrss``) is its own; both write their pooled states and the parent checks they
agree. Then the per-layer measures (cosine gap, retrieval both ways, CKA) are timed.
Wall time and the process's own CPU time are both reported: on a shared machine the CPU
time is what an idle 2-core machine would roughly need. The last line is one JSON object.
Target: ours under 60 s on 2 cores.

    python bench/alignment_throughput.py             # 1,000 pairs, ours and peer
    python bench/alignment_throughput.py --quick     # 100 pairs
    python bench/alignment_throughput.py --model PATH_OR_NAME --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def sentences(pairs: int) -> tuple[list[str], list[int], list[int]]:
    """Distinct English sentences then translations, and each pair's two indices into that list."""
    from polyinstruct.analysis.alignment import load_pairs

    per = load_pairs()
    rows = [p for lang in per for p in per[lang]]
    if pairs > len(rows):
        raise SystemExit(f"only {len(rows)} embedded pairs; asked for {pairs}")
    rows = rows[:pairs] if pairs == len(rows) else [rows[i * len(rows) // pairs] for i in range(pairs)]
    english = sorted({en for en, _ in rows})
    index = {s: i for i, s in enumerate(english)}
    sents = english + [xx for _, xx in rows]
    return sents, [index[en] for en, _ in rows], list(range(len(english), len(sents)))


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from polyinstruct.analysis.alignment import alignment_curves, load_model_and_tokenizer, pooled_hidden_states

    model, tok, _ = load_model_and_tokenizer(args.model, dtype="bfloat16" if args.variant == "ours-bf16" else "float32")
    sents, src, tgt = sentences(args.pairs)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if args.variant.startswith("ours"):
        pooled = pooled_hidden_states(model, tok, sents, batch_size=args.batch_size, max_length=args.max_length)
    else:
        kept = []
        with torch.no_grad():
            for s in sents:
                enc = tok(s, return_tensors="pt", truncation=True, max_length=args.max_length)
                kept.append(model(**enc, output_hidden_states=True).hidden_states)
        pooled = np.stack([np.stack([h[0].mean(dim=0).numpy() for h in states]) for states in kept], axis=1)
    embed_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    curves = alignment_curves(pooled[:, src], pooled[:, tgt])
    measure_s = time.perf_counter() - t1
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    np.save(args.save, pooled)
    print(json.dumps({
        "variant": args.variant, "pairs": args.pairs, "sentences": len(sents), "layers": int(pooled.shape[0]),
        "embed_s": round(embed_s, 2), "sentences_per_s": round(len(sents) / embed_s, 1),
        "pairs_per_s": round(args.pairs / (embed_s + measure_s), 1),
        "measures_s": round(measure_s, 3), "total_s": round(embed_s + measure_s, 2), "cpu_s": round(cpu_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_model_load_mb": round(rss_loaded / 1024, 1),
        "best_retrieval_layer": int(max(range(len(curves)), key=lambda i: curves[i]["retrieval_en_xx"]))}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 pairs instead of 1,000")
    ap.add_argument("--pairs", type=int, default=None)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--no-peer", action="store_true", help="skip the naive peer")
    ap.add_argument("--peer-pairs", type=int, default=None,
                    help="run the (slow) naive peer on the first N pairs only; compare sentences/s")
    ap.add_argument("--bf16", action="store_true", help="also run ours in bfloat16")
    ap.add_argument("--variant", choices=("ours", "ours-bf16", "naive"), help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.pairs = args.pairs or (100 if args.quick else 1000)
    if args.variant:
        child(args)
        return
    import numpy as np

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("ours",) + (("ours-bf16",) if args.bf16 else ()) + (() if args.no_peer else ("naive",)):
            save = str(Path(tmp) / f"{variant}.npy")
            n = args.peer_pairs if variant == "naive" and args.peer_pairs else args.pairs
            cmd = [sys.executable, __file__, "--variant", variant, "--save", save, "--pairs", str(n),
                   "--model", args.model, "--threads", str(args.threads), "--batch-size", str(args.batch_size),
                   "--max-length", str(args.max_length)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.stderr.write(proc.stderr[-3000:])
                raise SystemExit(f"{variant} failed (exit {proc.returncode})")
            results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{variant}: {results[variant]}", flush=True)
        if "naive" in results:
            a, b = np.load(str(Path(tmp) / "ours.npy")), np.load(str(Path(tmp) / "naive.npy"))
            if a.shape == b.shape:
                results["max_abs_diff_ours_vs_naive"] = float(np.abs(a - b).max())
            else:  # the peer ran on a subset: compare the states of the sentences both embedded
                peer_sents = sentences(results["naive"]["pairs"])[0]
                mine = {s: i for i, s in enumerate(sentences(args.pairs)[0])}
                idx = [mine[s] for s in peer_sents]
                results["max_abs_diff_ours_vs_naive"] = float(np.abs(a[:, idx] - b).max())
            ours, naive = results["ours"], results["naive"]
            results["speedup_sentences_per_s"] = round(ours["sentences_per_s"] / naive["sentences_per_s"], 2)
            results["cpu_speedup_per_sentence"] = round((naive["cpu_s"] / naive["sentences"])
                                                        / max(ours["cpu_s"] / ours["sentences"], 1e-9), 2)
        if "ours-bf16" in results:
            c = np.load(str(Path(tmp) / "ours-bf16.npy"))
            a = np.load(str(Path(tmp) / "ours.npy"))
            results["max_rel_diff_bf16"] = float(np.abs(a - c).max() / max(np.abs(a).max(), 1e-9))
    load = os.getloadavg()
    out = {"bench": "alignment_throughput", "model": args.model, "pairs": args.pairs, "threads": args.threads,
           "batch_size": args.batch_size, "target_s": 60, "meets_target": results["ours"]["total_s"] < 60,
           "loadavg_1m_at_end": round(load[0], 2), **results}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
