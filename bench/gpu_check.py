"""GPU check: the CUDA paths polyinstruct relies on, in one run of under 8 minutes on one machine.

Parts (each guarded: a missing library, GPU or feature is reported in the JSON, never a crash):

- ``full_bf16`` / ``lora_bf16``: full fine-tuning and LoRA (peft) of a ~0.5B Qwen2-style model built
  from a config (random init, nothing from the hub), bf16, tokens/s and MFU (model FLOPs 6·N·tokens
  for full, 4·N·tokens + 2·N_trainable for LoRA, over the GPU's dense bf16 peak).
- ``qlora_4bit`` / ``load_8bit``: loading the same model in 4-bit NF4 and 8-bit (bitsandbytes),
  memory and one LoRA training step on the 4-bit model.
- ``attention``: SDPA vs flash-attention-2 (when ``flash_attn`` is installed), training tokens/s each.
- ``generation``: vLLM vs Hugging Face ``generate`` tokens/s on the same prompts (token-id prompts,
  greedy), and their ratio.
- ``multi_gpu``: DeepSpeed ZeRO-2, ZeRO-3 and FSDP through ``polyinstruct train`` under
  ``accelerate launch`` (examples/train/accelerate_*.yaml), only with more than one GPU.

The last line printed is one JSON object. Without CUDA it says so (``"cuda": false``) and exits 1;
``--allow-cpu --size tiny`` runs the single-device parts on CPU with a tiny model (how the tests
check this script). ``--quick`` shortens every part. docs/clusters.md, "GPU check".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]

# Dense bf16 peak TFLOP/s (no sparsity) by device-name fragment, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 80GB HBM3": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0,
                    "H100 PCIe": 756.0, "H100": 756.0,
                    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0,
                    "RTX 3090": 71.0, "V100": 125.0, "T4": 65.0, "MI300X": 1307.0, "MI250X": 383.0}

SIZES = {  # Qwen2-0.5B's shape; "tiny" for CPU tests
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, max_position_embeddings=4096, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, max_position_embeddings=512, tie_word_embeddings=True),
}


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU by its name (longest matching fragment); None if unknown."""
    hits = [k for k in PEAK_BF16_TFLOPS if k.lower() in device_name.lower()]
    return PEAK_BF16_TFLOPS[max(hits, key=len)] if hits else None


def mfu(tokens_per_s: float, n_params: int, n_trainable: int, peak: float | None) -> float | None:
    """Model FLOPs utilisation: forward 2N + backward through activations 2N + weight gradients
    2·N_trainable per token (6N for full fine-tuning), over the peak. None without a peak."""
    if not peak:
        return None
    return round(tokens_per_s * (4 * n_params + 2 * n_trainable) / (peak * 1e12), 4)


def guarded(results: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    """Run one part; its result, or ``{"ok": false, "error": ...}`` (missing library: "skipped")."""
    t0 = time.monotonic()
    try:
        out = fn()
        results[name] = {"ok": True, **out}
    except _Skip as e:
        results[name] = {"ok": False, "skipped": str(e)}
    except ImportError as e:
        results[name] = {"ok": False, "skipped": f"not installed: {e.name or e}"}
    except Exception as e:  # reported, not raised: the other parts still run
        results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:500],
                         "where": traceback.format_exc(limit=-2).strip().splitlines()[-3:]}
    results[name]["seconds"] = round(time.monotonic() - t0, 1)
    _free()


class _Skip(Exception):
    pass


def _free() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def build_model(size: str, dtype, device: str, attn: str = "sdpa"):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(**SIZES[size], attn_implementation=attn)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(dtype)
    return model


def _n_params(model) -> tuple[int, int]:
    return (sum(p.numel() for p in model.parameters()),
            sum(p.numel() for p in model.parameters() if p.requires_grad))


def train_speed(model, device: str, steps: int, batch: int, seq: int, vocab: int) -> dict[str, Any]:
    """Tokens/s of AdamW training steps on random tokens (after one warm-up step)."""
    import torch

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=g).to(device)
    losses = []

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))

    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    dt = time.perf_counter() - t0
    total, trainable = _n_params(model)
    out = {"tokens_per_s": round(steps * batch * seq / dt, 1), "params": total, "trainable": trainable,
           "batch": batch, "seq": seq, "steps": steps, "loss_first": round(losses[0], 4),
           "loss_last": round(losses[-1], 4)}
    if device.startswith("cuda"):
        out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def part_full(a, device, dtype, peak) -> dict[str, Any]:
    model = build_model(a.size, dtype, device)
    r = train_speed(model, device, a.steps, a.batch, a.seq, SIZES[a.size]["vocab_size"])
    r["mfu"] = mfu(r["tokens_per_s"], r["params"], r["trainable"], peak)
    return r


def part_lora(a, device, dtype, peak) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build_model(a.size, dtype, device),
                           LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    r = train_speed(model, device, a.steps, a.batch, a.seq, SIZES[a.size]["vocab_size"])
    r["mfu"] = mfu(r["tokens_per_s"], r["params"], r["trainable"], peak)
    return r


def _saved_model(a, dtype, folder: Path) -> Path:
    path = folder / f"qwen2-{a.size}"
    if not (path / "config.json").exists():
        build_model(a.size, dtype, "cpu").save_pretrained(path)
    return path


def part_quantized(a, device, dtype, folder: Path, bits: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if not device.startswith("cuda"):
        raise _Skip("bitsandbytes quantization needs CUDA")
    import bitsandbytes  # noqa: F401  (a clear "not installed" before transformers' longer message)

    q = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                            bnb_4bit_use_double_quant=True) if bits == 4 else BitsAndBytesConfig(load_in_8bit=True))
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(_saved_model(a, dtype, folder), quantization_config=q,
                                                 device_map={"": 0}, dtype=dtype)
    out: dict[str, Any] = {"load_s": round(time.perf_counter() - t0, 1),
                           "memory_gb": round(model.get_memory_footprint() / 2**30, 3)}
    if bits == 4:  # QLoRA: LoRA on the 4-bit model trains
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        model = get_peft_model(prepare_model_for_kbit_training(model),
                               LoraConfig(r=16, target_modules="all-linear", task_type="CAUSAL_LM"))
        r = train_speed(model, device, max(2, a.steps // 2), a.batch, a.seq, SIZES[a.size]["vocab_size"])
        out.update({"qlora_tokens_per_s": r["tokens_per_s"], "qlora_loss_first": r["loss_first"],
                    "qlora_loss_last": r["loss_last"]})
    else:
        with torch.no_grad():
            ids = torch.randint(0, SIZES[a.size]["vocab_size"], (1, 32), device=device)
            out["forward_finite"] = bool(torch.isfinite(model(input_ids=ids).logits).all())
    return out


def part_attention(a, device, dtype, peak) -> dict[str, Any]:
    if not device.startswith("cuda"):
        raise _Skip("flash-attention needs CUDA")
    import flash_attn  # noqa: F401

    out = {}
    for impl in ("sdpa", "flash_attention_2"):
        r = train_speed(build_model(a.size, dtype, device, attn=impl), device, a.steps, a.batch, a.seq,
                        SIZES[a.size]["vocab_size"])
        out[impl] = {"tokens_per_s": r["tokens_per_s"],
                     "mfu": mfu(r["tokens_per_s"], r["params"], r["trainable"], peak)}
        _free()
    out["flash_vs_sdpa"] = round(out["flash_attention_2"]["tokens_per_s"] / out["sdpa"]["tokens_per_s"], 3)
    return out


def hf_generate_speed(model, device: str, prompts: list[list[int]], new_tokens: int) -> float:
    """Greedy Hugging Face generation tokens/s over equal-length prompts in one batch."""
    import torch

    ids = torch.tensor(prompts, device=device)
    model.eval()
    with torch.no_grad():
        model.generate(input_ids=ids[:1], max_new_tokens=2, do_sample=False, pad_token_id=0)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        _sync(device)
    return (out.shape[0] * (out.shape[1] - ids.shape[1])) / (time.perf_counter() - t0)


def part_generation(a, device, dtype, folder: Path) -> dict[str, Any]:
    import random

    rng = random.Random(0)
    vocab = SIZES[a.size]["vocab_size"]
    prompts = [[rng.randrange(10, vocab) for _ in range(64)] for _ in range(a.gen_prompts)]
    hf = hf_generate_speed(build_model(a.size, dtype, device), device, prompts, a.gen_tokens)
    out: dict[str, Any] = {"hf_tokens_per_s": round(hf, 1), "prompts": len(prompts), "new_tokens": a.gen_tokens}
    _free()
    if not device.startswith("cuda"):
        out["vllm"] = "skipped: vLLM needs CUDA"
        return out
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        out["vllm"] = "skipped: vllm not installed"
        return out
    llm = LLM(model=str(_saved_model(a, dtype, folder)), skip_tokenizer_init=True, dtype="bfloat16",
              gpu_memory_utilization=0.5, enforce_eager=a.quick, seed=0)
    sp = SamplingParams(temperature=0.0, max_tokens=a.gen_tokens, min_tokens=a.gen_tokens, detokenize=False)
    token_prompts = [{"prompt_token_ids": p} for p in prompts]
    llm.generate(token_prompts[:1], sp, use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    res = llm.generate(token_prompts, sp, use_tqdm=False)
    dt = time.perf_counter() - t0
    out["vllm_tokens_per_s"] = round(sum(len(r.outputs[0].token_ids) for r in res) / dt, 1)
    out["vllm_vs_hf"] = round(out["vllm_tokens_per_s"] / hf, 2)
    del llm
    return out


def part_multi_gpu(a, gpus: int, dtype, folder: Path) -> dict[str, Any]:
    """ZeRO-2, ZeRO-3 and FSDP: ``polyinstruct train`` (full fine-tuning, a few steps) under
    ``accelerate launch`` with the example configs; tokens/s from the run's budget.json."""
    if gpus < 2:
        raise _Skip(f"{gpus} GPU: DeepSpeed ZeRO-2/3 and FSDP need more than one")
    import yaml

    from polyinstruct.models.tiny import build_tiny_tokenizer

    model_dir = _saved_model(a, dtype, folder)
    if not (model_dir / "tokenizer_config.json").exists():
        build_tiny_tokenizer().save_pretrained(model_dir)
    data = folder / "data.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for i in range(256):
            f.write(json.dumps({"id": f"x{i}", "messages": [
                {"role": "user", "content": f"Question {i}: " + "lorem ipsum dolor sit amet " * 20},
                {"role": "assistant", "content": "answer " * 60}]}) + "\n")
    out: dict[str, Any] = {"gpus": gpus}
    for name, acc in (("zero2", "accelerate_deepspeed_zero2.yaml"), ("zero3", "accelerate_deepspeed_zero3.yaml"),
                      ("fsdp", "accelerate_fsdp.yaml")):
        run = folder / f"run-{name}"
        cfg = {"model": str(model_dir), "template": "tulu", "method": "full", "data": [str(data)],
               "output_dir": str(run), "max_steps": a.steps, "global_batch_size": 8 * gpus, "micro_batch_size": 8,
               "max_length": a.seq, "mixed_precision": "bf16", "resume": "never"}
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "examples" / "train" / acc), "--num_processes", str(gpus), "-m", "polyinstruct", "train",
               str(path), "--no-progress"]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.multi_timeout, cwd=REPO)  # ds json paths
        if p.returncode != 0:
            out[name] = {"ok": False, "error": p.stderr[-600:]}
            continue
        budget = json.loads((run / "budget.json").read_text())
        out[name] = {"ok": True, "seconds": round(time.perf_counter() - t0, 1),
                     "tokens_seen": budget.get("tokens_seen"), "processes": budget.get("processes"),
                     "tokens_per_s": budget.get("tokens_per_s")}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and tokens (about 3 minutes on one H100)")
    ap.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    ap.add_argument("--allow-cpu", action="store_true", help="run the single-device parts on CPU (tests)")
    ap.add_argument("--only", default=None, help="comma-separated parts (default: all)")
    a = ap.parse_args(argv)
    a.steps = 3 if a.quick else 10
    a.batch, a.seq = (4, 512) if a.size == "0.5b" else (2, 32)
    a.gen_prompts, a.gen_tokens = (16, 32) if a.quick else (64, 128)
    if a.size == "tiny":
        a.gen_prompts, a.gen_tokens = 2, 4
    a.multi_timeout = 150 if a.quick else 240
    t0 = time.monotonic()
    results: dict[str, Any] = {"benchmark": "gpu_check", "quick": a.quick, "size": a.size}
    try:
        import torch
    except ImportError:
        print(json.dumps({**results, "cuda": False, "error": "torch is not installed"}))
        return 1
    cuda = torch.cuda.is_available()
    results.update({"cuda": cuda, "torch": torch.__version__, "gpus": torch.cuda.device_count() if cuda else 0})
    if not cuda and not a.allow_cpu:
        print(json.dumps({**results, "error": "no CUDA device: torch.cuda.is_available() is False "
                          f"(torch {torch.__version__}); run on a CUDA machine, or --allow-cpu --size tiny"}))
        return 1
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = peak_tflops(name) if cuda else None
    results.update({"device": name, "peak_bf16_tflops": peak})
    if cuda:
        results["bf16_supported"] = torch.cuda.is_bf16_supported()
    only = set(a.only.split(",")) if a.only else None
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        folder = Path(tmp)
        parts: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("full_bf16", lambda: part_full(a, device, dtype, peak)),
            ("lora_bf16", lambda: part_lora(a, device, dtype, peak)),
            ("qlora_4bit", lambda: part_quantized(a, device, dtype, folder, 4)),
            ("load_8bit", lambda: part_quantized(a, device, dtype, folder, 8)),
            ("attention", lambda: part_attention(a, device, dtype, peak)),
            ("generation", lambda: part_generation(a, device, dtype, folder)),
            ("multi_gpu", lambda: part_multi_gpu(a, results["gpus"], dtype, folder)),
        ]
        for part, fn in parts:
            if only is None or part in only:
                guarded(results, part, fn)
                print(f"# {part}: {json.dumps(results[part])}", file=sys.stderr, flush=True)
    results["seconds"] = round(time.monotonic() - t0, 1)
    results["ok"] = all(v.get("ok") or "skipped" in v for v in results.values() if isinstance(v, dict))
    print(json.dumps(results))
    return 0 if results["ok"] else 2


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
