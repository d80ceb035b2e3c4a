"""Translation throughput: `data translate` batched by length vs one piece at a time, same model.

Both sides run the whole pipeline (``translate_dataset``: segmentation, cache, gates,
writing) on the same embedded English instruction records with the same causal-LM
engine (completion prompt, greedy, same new-token cap) and a fresh cache each; only
the engine batch size differs (``--batch-size`` vs 1). Records per second and the share
of identical translations are reported, so the speed-up is not bought with different output.

    python bench/translate_throughput.py                       # 48 records, random Llama (hidden 256)
    python bench/translate_throughput.py --quick               # 4 records, 16 new tokens: ~1 min, 2 idle cores
    python bench/translate_throughput.py --model gemma-3-270m  # a real model (packaged, CPU: slow)
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def random_llama(root: Path) -> str:
    """A random Llama (hidden 256, 4 layers) whose greedy text varies with the prompt."""
    import torch
    from transformers import AutoModelForCausalLM

    from polyinstruct.models.tiny import build_tiny_model

    path = build_tiny_model(root / "llama", hidden_size=256, num_layers=4)
    model = AutoModelForCausalLM.from_pretrained(str(path))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.08)
    model.save_pretrained(str(path))
    return str(path)


def run(engine, src: Path, out: Path) -> tuple[float, dict, list[str]]:
    from polyinstruct.fileio import iter_jsonl
    from polyinstruct.translate.run import translate_dataset

    t0 = time.perf_counter()
    res = translate_dataset(src, ["fr"], out, engine, progress=False, chunk_size=10_000)
    secs = time.perf_counter() - t0
    texts = [r["translation"] for r in iter_jsonl(out / "cache.jsonl")]
    keys = [r["key"] for r in iter_jsonl(out / "cache.jsonl")]
    return secs, res.summary["languages"]["fr"], [t for _, t in sorted(zip(keys, texts))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 records, 16 new tokens")
    ap.add_argument("--records", type=int, default=None)
    ap.add_argument("--model", default=None, help="model path or packaged name (default: a random Llama)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 24 (16 with --quick)")
    args = ap.parse_args()
    n = args.records or (4 if args.quick else 48)
    args.max_new_tokens = args.max_new_tokens or (16 if args.quick else 24)

    import torch

    from polyinstruct.data.embedded import load_instructions
    from polyinstruct.fileio import write_jsonl
    from polyinstruct.infer import load_backend
    from polyinstruct.lang.identify import load_identifier
    from polyinstruct.translate.engines import LLMEngine
    from polyinstruct.translate.protect import segment

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or random_llama(tmp)
        records = [c.to_dict() for c in load_instructions("en")[:n]]
        src = tmp / "en.jsonl"
        write_jsonl(src, records)
        pieces = len({u.text for r in records for m in r["messages"] for u in segment(m["content"]).units})
        backend = load_backend({"backend": "hf", "model": model, "device": "cpu", "batch_size": args.batch_size})
        load_identifier("fasttext-lite")  # warm the LID model once for both sides
        batched = LLMEngine(backend, name="hf", model=model, prompt_style="completion",
                            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
        single = LLMEngine(backend, name="hf", model=model, prompt_style="completion",
                           max_new_tokens=args.max_new_tokens, batch_size=1)
        warm = tmp / "warm.jsonl"
        write_jsonl(warm, records[:2])
        run(batched, warm, tmp / "warm")  # warm-up: first calls pay one-off costs
        b_secs, b_sum, b_texts = run(batched, src, tmp / "batched")
        backend.batch_size = 1
        s_secs, s_sum, s_texts = run(single, src, tmp / "single")
    same = sum(a == b for a, b in zip(b_texts, s_texts)) / max(1, len(b_texts))
    res = {"bench": "translate_throughput", "model": args.model or "random-llama-h256-l4", "records": n,
           "pieces": pieces, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
           "threads": torch.get_num_threads(),
           "batched_records_s": round(n / b_secs, 3), "single_records_s": round(n / s_secs, 3),
           "batched_s": round(b_secs, 2), "single_s": round(s_secs, 2),
           "ratio": round(s_secs / b_secs, 2), "identical_translations": round(same, 3),
           "pieces_translated": [b_sum["this_run"]["pieces_translated"], s_sum["this_run"]["pieces_translated"]]}
    print(f"batched (batch {args.batch_size}): {res['batched_records_s']} records/s ({b_secs:.1f}s) | one by one: "
          f"{res['single_records_s']} records/s ({s_secs:.1f}s) | ratio {res['ratio']}x | "
          f"identical translations: {same:.0%} | {pieces} pieces in {n} records")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
