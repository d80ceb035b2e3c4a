"""bench/gpu_check.py without a GPU: one clear JSON line saying so, its pieces (peak lookup,
MFU, the guard that reports instead of crashing), and the single-device parts on CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_peak_lookup_and_mfu():
    g = _module()
    assert g.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0  # SXM: the longest fragment wins over "H100"
    assert g.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert g.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert g.peak_tflops("Some Future GPU") is None
    # full fine-tuning: 6 N per token; 1e4 tok/s on 0.5e9 params over a 300 TFLOP/s peak = 0.1
    assert g.mfu(1e4, 500_000_000, 500_000_000, 300.0) == pytest.approx(0.1)
    assert g.mfu(1e4, 500_000_000, 0, 200.0) == pytest.approx(0.1)  # frozen weights: 4 N
    assert g.mfu(1e4, 10, 10, None) is None


def test_guard_reports_errors_and_missing_libraries_instead_of_raising():
    g = _module()
    out: dict = {}
    g.guarded(out, "fine", lambda: {"x": 1})
    g.guarded(out, "broken", lambda: 1 / 0)
    g.guarded(out, "missing", lambda: __import__("no_such_module_h16"))

    def skip():
        raise g._Skip("needs two GPUs")

    g.guarded(out, "skip", skip)
    assert out["fine"]["ok"] and out["fine"]["x"] == 1
    assert not out["broken"]["ok"] and out["broken"]["error"].startswith("ZeroDivisionError")
    assert out["missing"] == {"ok": False, "skipped": "not installed: no_such_module_h16",
                              "seconds": out["missing"]["seconds"]}
    assert out["skip"]["skipped"] == "needs two GPUs"


def test_without_cuda_prints_one_json_line_saying_so_and_exits_1():
    p = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300)
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert p.returncode == 1
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert r["cuda"] is False and "no CUDA device" in r["error"]


@pytest.mark.slow
def test_single_device_parts_run_on_cpu_with_a_tiny_model():
    p = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--allow-cpu", "--size", "tiny",
                        "--only", "lora_bf16,qlora_4bit,generation,multi_gpu"],
                       capture_output=True, text=True, timeout=600)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 0, p.stderr[-2000:]
    assert r["lora_bf16"]["ok"] and r["lora_bf16"]["tokens_per_s"] > 0
    assert 0 < r["lora_bf16"]["trainable"] < r["lora_bf16"]["params"]
    assert r["generation"]["ok"] and r["generation"]["hf_tokens_per_s"] > 0
    if not r["cuda"]:
        assert r["qlora_4bit"]["skipped"] and r["multi_gpu"]["skipped"] and "vllm" in r["generation"]
    assert "full_bf16" not in r  # --only
