"""What evaluators need from the server (vLLM's and OpenAI's semantics): echo + logprobs, token-id
prompts, max_tokens=0, chat logprobs, the tokenizer endpoints; and lm-eval's own local-completions
client scores a multiple-choice task against the server exactly as lm-eval's HF backend does."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from polyinstruct.infer.serve import create_app
from tests.infer.conftest import ServerThread

FIXTURE = Path(__file__).parent / "fixtures" / "mc_task"


@pytest.fixture(scope="module")
def plain_backend(varied_model_dir):
    from polyinstruct.infer.hf import HFBackend

    return HFBackend.from_path(varied_model_dir, device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def server(hf_backend):
    with ServerThread(create_app(hf_backend, model_name="m", max_tokens_limit=64)) as s:
        yield s


def _reference_logprobs(backend, ids):
    import torch

    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return [None] + [lp[i - 1, ids[i]].item() for i in range(1, len(ids))], lp


def _post(server, path, body, status=200):
    r = httpx.post(server.url + path, json=body, timeout=120)
    assert r.status_code == status, r.text
    return r.json()


def test_echo_logprobs_max_tokens_zero_scores_the_prompt(server, hf_backend):
    prompt = "Объясните, почему небо голубое. The sky"
    out = _post(server, "/v1/completions", {"model": "m", "prompt": prompt, "max_tokens": 0, "echo": True,
                                            "logprobs": 3, "temperature": 0})
    ch = out["choices"][0]
    ids = hf_backend._encode(prompt)
    ref, lp = _reference_logprobs(hf_backend, ids)
    assert ch["text"] == prompt and ch["finish_reason"] == "length"
    got = ch["logprobs"]
    assert len(got["tokens"]) == len(ids) == len(got["token_logprobs"]) == len(got["text_offset"])
    assert got["token_logprobs"][0] is None and got["top_logprobs"][0] is None
    for a, b in zip(got["token_logprobs"][1:], ref[1:]):
        assert a == pytest.approx(b, abs=1e-4)
    for i, top in enumerate(got["top_logprobs"][1:], 1):
        assert 3 <= len(top) <= 4  # the 3 best and the chosen token, as vLLM returns them
        assert max(top.values()) == pytest.approx(lp[i - 1].max().item(), abs=1e-4)
        assert any(v == pytest.approx(ref[i], abs=1e-4) for v in top.values())
    assert got["text_offset"][0] == 0 and got["text_offset"] == sorted(got["text_offset"])
    assert out["usage"]["prompt_tokens"] == len(ids) and out["usage"]["completion_tokens"] == 0


def test_token_id_prompts_with_echo_and_one_new_token(server, hf_backend):
    a, b = hf_backend._encode("What is 12 times 7?"), hf_backend._encode("Hi there")
    out = _post(server, "/v1/completions", {"model": "m", "prompt": [a, b], "max_tokens": 1, "echo": True,
                                            "logprobs": 1, "temperature": 0})
    for ids, ch in zip([a, b], sorted(out["choices"], key=lambda c: c["index"])):
        got = ch["logprobs"]
        assert len(got["token_logprobs"]) == len(ids) + 1
        ref, lp = _reference_logprobs(hf_backend, ids)
        greedy = lp[-1].argmax().item()
        assert got["token_logprobs"][-1] == pytest.approx(lp[-1].max().item(), abs=1e-4)
        assert got["tokens"][-1] == hf_backend.tokenizer.decode([greedy])
        assert got["token_logprobs"][len(ids) - 1] == pytest.approx(ref[-1], abs=1e-4)


def test_token_id_prompt_generation_equals_generate_from_the_same_ids(server, hf_backend):
    import torch

    ids = hf_backend._encode("Give three tips for staying healthy.")
    out = _post(server, "/v1/completions", {"model": "m", "prompt": ids, "max_tokens": 8, "temperature": 0})
    with torch.inference_mode():
        gen = hf_backend.model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False,
                                        pad_token_id=hf_backend.pad_id)
    expected = hf_backend.tokenizer.decode(gen[0, len(ids):], skip_special_tokens=True)
    for stop in hf_backend.prompt_format.stop_strings:
        expected = expected.split(stop)[0]
    assert out["choices"][0]["text"] == expected
    assert out["choices"][0]["logprobs"] is None


def test_chat_logprobs(server):
    body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 0}
    plain = _post(server, "/v1/chat/completions", body)
    scored = _post(server, "/v1/chat/completions", {**body, "logprobs": True, "top_logprobs": 2})
    ch = scored["choices"][0]
    assert ch["message"]["content"] == plain["choices"][0]["message"]["content"]
    content = ch["logprobs"]["content"]
    assert len(content) == scored["usage"]["completion_tokens"] > 0
    for c in content:
        assert len(c["top_logprobs"]) == 2
        assert c["logprob"] == pytest.approx(c["top_logprobs"][0]["logprob"], abs=1e-4)  # greedy = the best
        assert c["bytes"] == list(c["token"].encode())
    assert plain["choices"][0]["logprobs"] is None


def test_tokenizer_endpoints(server, hf_backend):
    info = httpx.get(server.url + "/tokenizer_info", timeout=30).json()
    assert info["eos_token"] == hf_backend.tokenizer.eos_token
    toks = _post(server, "/tokenize", {"prompt": "Привет, мир", "add_special_tokens": False})
    assert toks["tokens"] == hf_backend.tokenizer("Привет, мир", add_special_tokens=False)["input_ids"]
    assert toks["count"] == len(toks["tokens"])
    assert _post(server, "/detokenize", {"tokens": toks["tokens"]})["prompt"] == "Привет, мир"
    chat = _post(server, "/tokenize", {"messages": [{"role": "user", "content": "Hi"}]})
    assert chat["tokens"] == hf_backend.encode_messages([{"role": "user", "content": "Hi"}])


@pytest.mark.parametrize("body, words, param", [
    ({"prompt": [[1, 2, 10**9]], "echo": True, "logprobs": 1, "max_tokens": 0}, "outside the vocabulary", "prompt.0"),
    ({"prompt": "hi", "max_tokens": 0}, "echo", None),
    ({"prompt": "hi", "echo": True, "stream": True}, "stream", None),
    ({"prompt": "hi", "logprobs": 21}, "less than or equal", "logprobs"),
    ({"prompt": [[]]}, "empty", None),
    ({"prompt": "hi", "top_logprobs": 2}, "top_logprobs", "top_logprobs"),
])
def test_bad_scoring_requests_are_400(server, body, words, param):
    err = _post(server, "/v1/completions", {"model": "m", **body}, status=400)["error"]
    assert words in err["message"]
    if param:
        assert (err["param"] or "").startswith(param)


def test_chat_stream_with_logprobs_is_400(server):
    err = _post(server, "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                 "logprobs": True, "stream": True}, status=400)["error"]
    assert "stream" in err["message"]


@pytest.mark.slow
def test_lm_eval_local_completions_equals_hf_backend(plain_backend, varied_model_dir, tmp_path):
    """lm-eval's own client against `polyinstruct serve` scores a multiple-choice task as lm-eval's HF backend."""
    lm_eval = pytest.importorskip("lm_eval", reason="the eval extra (lm-eval) is not installed")
    pytest.importorskip("tenacity")
    pytest.importorskip("aiohttp")
    from lm_eval.tasks import TaskManager

    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    yaml_text = (FIXTURE / "mc_parity.yaml").read_text().replace("capitals.jsonl", str(FIXTURE / "capitals.jsonl"))
    (task_dir / "mc_parity.yaml").write_text(yaml_text)
    tm = TaskManager(include_path=str(task_dir), include_defaults=False)

    def run(model, model_args):
        return lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=["mc_parity"], task_manager=tm,
                                       log_samples=True, batch_size=1, random_seed=0, numpy_random_seed=0,
                                       torch_random_seed=0, fewshot_random_seed=0)

    hf = run("hf", {"pretrained": str(varied_model_dir), "device": "cpu", "dtype": "float32"})
    with ServerThread(create_app(plain_backend, model_name="tiny", max_tokens_limit=64)) as s:
        api = run("local-completions", {"model": "tiny", "base_url": s.url + "/v1/completions",
                                        "tokenizer_backend": "auto", "num_concurrent": 1, "max_retries": 1})
    print("parity", {k: (hf["results"]["mc_parity"][k], api["results"]["mc_parity"][k]) for k in ("acc,none", "acc_norm,none")})
    for metric in ("acc,none", "acc_norm,none"):
        assert api["results"]["mc_parity"][metric] == hf["results"]["mc_parity"][metric], metric
    hs = {r["doc_id"]: r for r in hf["samples"]["mc_parity"]}
    n = 0
    for r in api["samples"]["mc_parity"]:
        for (a, _), (b, _) in zip(r["filtered_resps"], hs[r["doc_id"]]["filtered_resps"]):
            assert float(a) == pytest.approx(float(b), abs=1e-3)
            assert math.isfinite(float(a))
            n += 1
    assert n == sum(len(r["doc"]["choices"]) for r in hf["samples"]["mc_parity"]) == 27


def test_scoring_jobs_run_batched_in_one_forward_pass_with_the_same_logprobs(hf_backend, monkeypatch):
    """lm-eval's likelihood requests (echo, max_tokens=1, logprobs=1) of one batch: one padded forward
    pass for all of them (not one, or two, per prompt), the same numbers as scoring each alone, and the
    greedy next token taken from that pass; a small logits budget splits the batch, same numbers."""
    from polyinstruct.infer import logprobs as lp
    from polyinstruct.infer.backend import DecodingParams

    prompts = ["The sky is", "Объясните, почему небо голубое.", "Hi", "What is 12 times 7? It is"]
    jobs = [lp.ScoreJob(hf_backend._encode(p), 1, echo=True, top=1) for p in prompts]
    calls = []
    handle = hf_backend.model.register_forward_hook(lambda m, a, k: calls.append(1))
    try:
        gens = lp.run_jobs(hf_backend, jobs, DecodingParams(max_new_tokens=1, do_sample=False))
    finally:
        handle.remove()
    assert len(calls) == 1
    for job, g in zip(jobs, gens):
        ref, lps = _reference_logprobs(hf_backend, job.ids)
        assert g.token_ids[:len(job.ids)] == job.ids and len(g.token_logprobs) == len(job.ids) + 1
        for a, b in zip(g.token_logprobs[1:len(job.ids)], ref[1:]):
            assert a == pytest.approx(b, abs=1e-4)
        greedy = lps[-1].argmax().item()
        assert g.token_ids[-1] == greedy and g.token_logprobs[-1] == pytest.approx(lps[-1].max().item(), abs=1e-4)
    monkeypatch.setattr(lp, "MAX_LOGIT_ELEMENTS", 1)  # one row per pass
    again = lp.run_jobs(hf_backend, jobs, DecodingParams(max_new_tokens=1, do_sample=False))
    for g, h in zip(gens, again):
        assert g.token_ids == h.token_ids
        assert g.token_logprobs[1:] == pytest.approx(h.token_logprobs[1:], abs=1e-4)
