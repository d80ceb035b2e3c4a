"""`auto` precisions pick bfloat16 only where the hardware computes it natively."""

from __future__ import annotations

import pytest

from polyinstruct.models import hardware


@pytest.mark.parametrize("flags, expected", [
    ({"fpu", "avx512f", "amx_bf16"}, "bfloat16"),
    ({"fpu", "avx512f", "avx512_bf16"}, "bfloat16"),
    ({"fpu", "avx2", "avx512f"}, "float32"),
    (set(), "float32"),
])
def test_auto_dtype_follows_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    assert hardware.auto_dtype("cpu") == expected


def test_cpu_flags_reads_the_kernels_list():
    flags = hardware.cpu_flags()
    assert isinstance(flags, frozenset)
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        assert flags == frozenset()
        return
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    assert flags == frozenset(line.partition(":")[2].split())


def test_training_and_experiment_auto_settings_resolve_to_what_the_hardware_has(monkeypatch):
    from polyinstruct.experiment.config import EvalSettings
    from polyinstruct.train.config import TrainConfig

    base = {"model": "m", "data": ["d.jsonl"], "output_dir": "o"}
    for flags, mp, dt in (({"amx_bf16"}, "bf16", "bfloat16"), (set(), "no", "float32")):
        monkeypatch.setattr(hardware, "cpu_flags", lambda flags=flags: frozenset(flags))
        cfg = TrainConfig.model_validate({**base, "mixed_precision": "auto"})
        assert cfg.mixed_precision == mp and cfg.dump()["mixed_precision"] == mp  # the fingerprint sees the choice
        assert EvalSettings(dtype="auto").resolved_dtype() == dt
    assert EvalSettings().resolved_dtype() == "float32"  # the default keeps float32 everywhere
