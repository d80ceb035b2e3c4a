"""The openai backend (lm-eval's local-completions client) against `polyinstruct serve` gives the
HF backend's generations on the same model (greedy), so endpoints are benchmarked like local models."""

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.mark.slow
def test_openai_backend_against_polyinstruct_serve_matches_hf(tmp_path, monkeypatch):
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(k, "1")
    from polyinstruct.eval.run import evaluate
    from polyinstruct.infer.hf import HFBackend
    from polyinstruct.infer.serve import create_app
    from polyinstruct.models.tiny import build_tiny_model
    from tests.infer.conftest import ServerThread

    model = str(build_tiny_model(tmp_path / "tiny"))
    opts = {"max_new_tokens": "6", "tydiqa_languages": "en,ru"}
    hf = evaluate(model, "tulu_gsm8k_direct,tulu_tydiqa_goldp", out=tmp_path / "hf", data_dir=FIXTURES, limit=2,
                  task_options=opts, backend_options={"chat": "off"})
    app = create_app(HFBackend.from_path(model, device="cpu"), model_name="tiny", max_tokens_limit=64)
    with ServerThread(app) as srv:
        api = evaluate("tiny", "tulu_gsm8k_direct,tulu_tydiqa_goldp", out=tmp_path / "api", data_dir=FIXTURES,
                       limit=2, task_options=opts, backend="openai",
                       backend_options={"base_url": srv.url + "/v1/completions", "chat": "off"})
    assert [r["score"] for r in api["tasks"]] == [r["score"] for r in hf["tasks"]]

    def gens(root):
        out = {}
        for p in sorted(Path(root).rglob("samples_*.jsonl")):
            out[p.name] = [json.loads(x)["resps"][0][0].strip() for x in p.read_text().splitlines()]
        return out

    assert gens(tmp_path / "api") == gens(tmp_path / "hf") and gens(tmp_path / "hf")


def test_chat_rendering_uses_the_template_and_continues_an_answer_prefix():
    from polyinstruct.eval.models import render_chat
    from polyinstruct.infer.prompting import resolve_prompt_format

    fmt = resolve_prompt_format(None, None, "tulu")
    user = [{"role": "user", "content": "Q: 2+2?"}]
    full = render_chat(fmt, user)
    assert full == fmt.render(user) and full.startswith("<|user|>\nQ: 2+2?") and full.rstrip().endswith("<|assistant|>")
    prefixed = render_chat(fmt, user + [{"role": "assistant", "content": "A: The answer is"}], False)
    assert prefixed == full + "A: The answer is"
