"""Throughput and peak memory of layer-wise alignment (polyinstruct analyze alignment).

1,000 English-X sentence pairs (the embedded en-fr/es/ru/bg/zh pairs, 200 each: 200 distinct
English sentences and 1,000 translations, so 1,200 sentences, as ``analyze alignment`` embeds
each English sentence once) go through every layer of SmolLM2-135M on the CPU. ``ours`` is
``analysis.alignment.pooled_hidden_states`` as ``analyze alignment`` runs it by default:
length-sorted batches, inference mode, the decoder without its LM head, each layer's states
mean-pooled as soon as the batch returns, ``--dtype auto`` (bfloat16 on CPUs with AMX or
AVX512-BF16, float32 elsewhere). ``ours-fp32`` is the same in float32; the bench reports how
far the default's measures (cosine gap, retrieval both ways, CKA, per layer and language
pair) are from float32's. The peer, measured the same way in the same run, is the naive
loop: one sentence at a time in float32 with ``output_hidden_states=True`` under
``torch.no_grad()``, every layer's full states kept until the end, then pooled. Each variant
runs in its own process so that peak RSS (``ru_maxrss``) is its own; they write their pooled
states and the parent compares them. Wall time and the process's CPU time are reported; the
last line is one JSON object. Target: ours under 60 s on 2 cores.

    python bench/alignment_throughput.py             # 1,000 pairs: ours, ours-fp32, naive peer on 100 pairs
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def sentences(pairs: int) -> tuple[list[str], list[int], list[int], list[str]]:
    """Distinct English sentences then translations, each pair's two indices into that list, and
    each pair's language."""
    from polyinstruct.analysis.alignment import load_pairs

    per = load_pairs()
    rows = [(lang, p) for lang in per for p in per[lang]]
    if pairs > len(rows):
        raise SystemExit(f"only {len(rows)} embedded pairs; asked for {pairs}")
    rows = rows[:pairs] if pairs == len(rows) else [rows[i * len(rows) // pairs] for i in range(pairs)]
    english = sorted({en for _, (en, _) in rows})
    index = {s: i for i, s in enumerate(english)}
    sents = english + [xx for _, (_, xx) in rows]
    return (sents, [index[en] for _, (en, _) in rows], list(range(len(english), len(sents))),
            [lang for lang, _ in rows])


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from polyinstruct.analysis.alignment import alignment_curves, load_model_and_tokenizer, pooled_hidden_states

    from polyinstruct.analysis.alignment import resolve_dtype

    dtype = resolve_dtype("auto" if args.variant == "ours" else "float32")
    model, tok, _ = load_model_and_tokenizer(args.model, dtype=dtype)
    sents, src, tgt, _ = sentences(args.pairs)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if args.variant in ("ours", "ours-fp32"):
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
        "variant": args.variant, "dtype": dtype, "pairs": args.pairs, "sentences": len(sents), "layers": int(pooled.shape[0]),
        "embed_s": round(embed_s, 2), "sentences_per_s": round(len(sents) / embed_s, 1),
        "pairs_per_s": round(args.pairs / (embed_s + measure_s), 1),
        "measures_s": round(measure_s, 3), "total_s": round(embed_s + measure_s, 2), "cpu_s": round(cpu_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_model_load_mb": round(rss_loaded / 1024, 1),
        "best_retrieval_layer": int(max(range(len(curves)), key=lambda i: curves[i]["retrieval_en_xx"]))}))


def measure_agreement(default: np.ndarray, fp32: np.ndarray, pairs: int) -> dict[str, float]:
    """Largest |difference| of each alignment measure (every layer, every language pair) between two
    precisions' pooled states, and the layer of best en->xx retrieval in each."""
    from polyinstruct.analysis.alignment import alignment_curves

    _, src, tgt, langs = sentences(pairs)
    out: dict[str, float] = {}
    best = {}
    for name, states in (("default", default), ("fp32", fp32)):
        by_lang = {}
        for lang in sorted(set(langs)):
            k = [j for j, l in enumerate(langs) if l == lang]
            by_lang[lang] = alignment_curves(states[:, [src[j] for j in k]], states[:, [tgt[j] for j in k]])
        best[name] = by_lang
    for measure in ("cos_gap", "retrieval_en_xx", "retrieval_xx_en", "cka"):
        out[measure] = round(max(abs(a[measure] - b[measure]) for lang in best["fp32"]
                                 for a, b in zip(best["default"][lang], best["fp32"][lang])), 4)
    mean = {name: np.mean([[r["retrieval_en_xx"] for r in c] for c in best[name].values()], axis=0)
            for name in best}
    out["best_retrieval_layer_default"] = int(np.argmax(mean["default"]))
    out["best_retrieval_layer_fp32"] = int(np.argmax(mean["fp32"]))
    return out


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
                    help="run the (slow) naive peer on N pairs only and compare sentences/s (default: 100 "
                         "for the full run, all pairs for --quick)")
    ap.add_argument("--no-fp32", action="store_true", help="skip the float32 run of ours")
    ap.add_argument("--variant", choices=("ours", "ours-fp32", "naive"), help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.pairs = args.pairs or (100 if args.quick else 1000)
    if args.peer_pairs is None:
        args.peer_pairs = min(args.pairs, 100)
    if args.variant:
        child(args)
        return

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("ours",) + (() if args.no_fp32 else ("ours-fp32",)) + (() if args.no_peer else ("naive",)):
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
        ref = "ours-fp32" if "ours-fp32" in results else "ours"
        if "naive" in results:
            a, b = np.load(str(Path(tmp) / f"{ref}.npy")), np.load(str(Path(tmp) / "naive.npy"))
            if a.shape == b.shape:
                results["max_abs_diff_fp32_vs_naive"] = float(np.abs(a - b).max())
            else:  # the peer ran on a subset: compare the states of the sentences both embedded
                peer_sents = sentences(results["naive"]["pairs"])[0]
                mine = {s: i for i, s in enumerate(sentences(args.pairs)[0])}
                idx = [mine[s] for s in peer_sents]
                results["max_abs_diff_fp32_vs_naive"] = float(np.abs(a[:, idx] - b).max())
            ours, naive = results[ref], results["naive"]
            results["speedup_fp32_vs_naive_sentences_per_s"] = round(ours["sentences_per_s"] / naive["sentences_per_s"], 2)
            results["speedup_default_vs_naive_sentences_per_s"] = round(
                results["ours"]["sentences_per_s"] / naive["sentences_per_s"], 2)
        if "ours-fp32" in results and results["ours"]["dtype"] != "float32":
            results["measures_max_abs_diff_default_vs_fp32"] = measure_agreement(
                np.load(str(Path(tmp) / "ours.npy")), np.load(str(Path(tmp) / "ours-fp32.npy")), args.pairs)
    load = os.getloadavg()
    out = {"bench": "alignment_throughput", "model": args.model, "pairs": args.pairs, "threads": args.threads,
           "default_dtype": results["ours"]["dtype"],
           "batch_size": args.batch_size, "target_s": 60, "meets_target": results["ours"]["total_s"] < 60,
           "loadavg_1m_at_end": round(load[0], 2), **results}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
