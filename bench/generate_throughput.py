"""Generation throughput: ``polyinstruct predict`` vs a naive batch-1 ``generate`` loop.

Same model, same prompts (rendered with the same template), greedy, same number of
new tokens; both sides' texts are compared so the speed-up is not bought with
different output. ``--size small`` uses a bigger random Llama (hidden 256, 4 layers)
where compute, not Python overhead, dominates. With ``--vllm`` (a GPU and the vllm
extra) the vLLM backend is timed too.

    python bench/generate_throughput.py            # 64 prompts x 64 tokens, tiny and small
    python bench/generate_throughput.py --quick    # under a minute
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

TOPICS = ["Give three tips for staying healthy.", "Explain why the sky is blue.", "Write a short poem about the sea.",
          "What is 12 times 7?", "Объясните, почему небо голубое.", "请给出三个保持健康的建议。",
          "Donnez trois conseils pour rester en bonne santé.", "¿Cuál es la capital de España?"]


def build_model(size: str, root: Path) -> Path:
    """A random Llama whose greedy text varies with the prompt (the stock init repeats one token)."""
    import torch
    from transformers import AutoModelForCausalLM

    from polyinstruct.models.tiny import build_tiny_model

    hidden, layers, std = (64, 2, 0.15) if size == "tiny" else (256, 4, 0.08)
    path = build_tiny_model(root / size, hidden_size=hidden, num_layers=layers)
    model = AutoModelForCausalLM.from_pretrained(str(path))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    model.save_pretrained(str(path))
    return path


def prompts(n: int) -> list[list[dict[str, str]]]:
    # Varied lengths, as in a real evaluation set, so padding and sorting matter.
    return [[{"role": "user", "content": " ".join([TOPICS[i % len(TOPICS)]] * (1 + i % 5)) + f" ({i})"}]
            for i in range(n)]


def naive_loop(backend, convs, new_tokens: int) -> tuple[list[str], int, float]:
    """What a user writes first: one prompt at a time through ``model.generate``."""
    import torch

    from polyinstruct.infer.decoding import trim_at_stop

    tok, model = backend.tokenizer, backend.model
    stops = backend.prompt_format.stop_strings  # the template's end-of-turn text, as predict uses
    extra = {"stop_strings": stops, "tokenizer": tok} if stops else {}
    texts, tokens = [], 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for conv in convs:
            ids = torch.tensor([backend.encode_messages(conv)])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 do_sample=False, pad_token_id=backend.pad_id, **extra)
            new = out[0, ids.shape[1]:].tolist()
            if tok.eos_token_id in new:
                new = new[:new.index(tok.eos_token_id)]
            tokens += len(new)
            texts.append(trim_at_stop(tok.decode(new, skip_special_tokens=True), stops)[0])
    return texts, tokens, time.perf_counter() - t0


def polyinstruct_predict(backend, convs, new_tokens: int, batch_size: int, tmp: Path) -> tuple[list[str], int, float]:
    from polyinstruct.fileio import iter_jsonl
    from polyinstruct.infer.predict import predict

    recs = [{"id": str(i), "messages": c} for i, c in enumerate(convs)]
    out = tmp / f"pred-{time.time_ns()}.jsonl"
    t0 = time.perf_counter()
    predict(recs, backend, out, decoding="greedy", max_new_tokens=new_tokens, batch_size=batch_size,
            chunk_size=len(recs))
    secs = time.perf_counter() - t0
    rows = {r["id"]: r for r in iter_jsonl(out)}
    return [rows[str(i)]["response"] for i in range(len(convs))], sum(r["completion_tokens"] for r in rows.values()), secs


def run_size(size: str, n: int, new_tokens: int, batch_size: int, tmp: Path) -> dict:
    import torch

    from polyinstruct.infer.hf import HFBackend

    path = build_model(size, tmp)
    backend = HFBackend.from_path(path, template="tulu", device="cpu", batch_size=batch_size)
    convs = prompts(n)
    polyinstruct_predict(backend, convs[:2], 2, batch_size, tmp)  # warm-up
    p_texts, p_tokens, p_secs = polyinstruct_predict(backend, convs, new_tokens, batch_size, tmp)
    n_texts, n_tokens, n_secs = naive_loop(backend, convs, new_tokens)
    res = {"size": size, "params": sum(p.numel() for p in backend.model.parameters()), "prompts": n,
           "new_tokens": new_tokens, "batch_size": batch_size, "threads": torch.get_num_threads(),
           "predict_tok_s": round(p_tokens / p_secs, 1), "naive_tok_s": round(n_tokens / n_secs, 1),
           "predict_s": round(p_secs, 2), "naive_s": round(n_secs, 2),
           "ratio": round((p_tokens / p_secs) / (n_tokens / n_secs), 2), "identical_text": p_texts == n_texts}
    print(f"[{size}] predict {res['predict_tok_s']} tok/s ({p_tokens} tokens, {p_secs:.1f}s) | naive batch-1 "
          f"{res['naive_tok_s']} tok/s ({n_tokens} tokens, {n_secs:.1f}s) | ratio {res['ratio']}x | "
          f"identical text: {res['identical_text']}")
    return res


def run_vllm(size: str, n: int, new_tokens: int, tmp: Path) -> dict:
    from polyinstruct.infer import load_backend
    from polyinstruct.infer.decoding import resolve_decoding

    path = build_model(size, tmp)
    params = resolve_decoding("greedy", max_new_tokens=new_tokens)
    convs = prompts(n)
    out = {}
    for name in ("hf", "vllm"):
        b = load_backend({"backend": name, "model": str(path), "template": "tulu"},
                         **({"device": "cuda", "batch_size": n} if name == "hf" else {}))
        b.generate(convs[:2], params)
        t0 = time.perf_counter()
        gens = b.generate(convs, params)
        secs = time.perf_counter() - t0
        out[f"{name}_gpu_tok_s"] = round(sum(g.completion_tokens for g in gens) / secs, 1)
    print(f"[gpu {size}] hf {out['hf_gpu_tok_s']} tok/s | vllm {out['vllm_gpu_tok_s']} tok/s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model only, 32 prompts x 32 tokens")
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--vllm", action="store_true", help="also time vLLM vs HF on a GPU")
    ap.add_argument("--threads", type=int, help="torch CPU threads for both sides (default: torch's choice; "
                                                "1 is much faster on a machine busy with other work)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = ["tiny"] if args.quick else args.sizes.split(",")
    n, new = (32, 32) if args.quick else (args.prompts, args.new_tokens)
    results: dict = {"bench": "generate_throughput", "runs": []}
    with tempfile.TemporaryDirectory() as d:
        for size in sizes:
            results["runs"].append(run_size(size, n, new, args.batch_size, Path(d)))
        if args.vllm:
            results["gpu"] = run_vllm(sizes[-1], n, new, Path(d))
    results["min_ratio"] = min(r["ratio"] for r in results["runs"])
    results["load_avg_1m"] = round(os.getloadavg()[0], 2)
    results["cpus"] = os.cpu_count()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
