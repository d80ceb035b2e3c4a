"""AlpacaEval-style judging: the package's annotator config, its parser on recorded replies, the
order randomisation, win rate / LC win rate, and a full run against the scripted loopback server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("sklearn", reason="the alpaca-eval extra brings scikit-learn (.ci/run installs it)")
from polyinstruct.errors import ConfigError, DataError, MissingDependencyError, UnknownNameError  # noqa: E402
from polyinstruct.fileio import write_jsonl  # noqa: E402
from polyinstruct.judge import alpacaeval as A  # noqa: E402
from tests.judge.fake_server import ScriptedServer  # noqa: E402

try:
    A.package_dir()
except MissingDependencyError:
    pytest.skip("alpaca-eval is not installed (pip install 'polyinstruct[alpaca-eval]'; .ci/run does)",
                allow_module_level=True)

# Replies recorded from GPT-4-style annotators for the alpaca_eval_gpt4 prompt, and what the package's
# ranking_parser makes of them (1 = model_1 preferred, 2 = model_2, None = its NaN).
RECORDED = [
    ("[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]", 1.0),
    ("[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]", 2.0),
    ("[\n    {'model': 'model_2', 'rank': 1},\n    {'model': 'model_1', 'rank': 2}\n]", 2.0),
    ('[{"model": "model_1", "rank": 1}, {"model": "model_2", "rank": 2}]', 1.0),  # JSON quotes are literals too
    ("  [{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]\n", 1.0),
    ("[{'model': 'model_1', 'rank': 3}, {'model': 'model_2', 'rank': 1}]", None),  # the package's doctest: nan
    ("Model 1 is clearly better.", None),
    ("```python\n[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]\n```", None),
    ("[{'model': 'model_2', 'rank': 1}]", None),
    ("__import__('os').system('touch /tmp/pwned')", None),  # literal_eval: nothing executes
    ("", None),
]


@pytest.mark.parametrize("reply,expected", RECORDED)
def test_ranking_parser_on_recorded_replies(reply, expected):
    assert A.load_annotator().parse(reply) == expected


def test_annotator_is_read_from_the_installed_package():
    ann = A.load_annotator("alpaca_eval_gpt4")
    assert ann.parser == "ranking_parser" and ann.source.endswith("alpaca_eval_gpt4/configs.yaml")
    assert "site-packages" in ann.template_file or "alpaca_eval" in ann.template_file
    assert ann.decoding().max_new_tokens == 100 and ann.decoding().do_sample is False
    msgs = ann.render("Say hi {output_1}", "Hello", "Hi")
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    # each placeholder replaced once, in order, like the package's make_prompts
    assert '"instruction": """Say hi {output_1}"""' in user
    assert '"answer": """Hello"""' in user and '"answer": """Hi"""' in user
    assert "{output_2}" not in user and "<|im_start|>" not in user


def test_unknown_and_unsupported_annotators_are_clear_errors(monkeypatch):
    with pytest.raises(UnknownNameError, match="Did you mean: alpaca_eval_gpt4"):
        A.load_annotator("alpaca_eval_gpt")
    with pytest.raises(ConfigError, match="logprob_parser.*log-probabilities.*usable annotators: alpaca_eval_gpt4"):
        A.load_annotator("weighted_alpaca_eval_gpt4_turbo")
    monkeypatch.setattr(A.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"polyinstruct\[alpaca-eval\]"):
        A.load_annotator()


def test_win_rate_hand_computed():
    # canonical preferences 2, 2, 1, draw (0 or 1.5) and one unparsed: x = 1, 1, 0, .5 -> 62.5
    m = A.win_rate([2.0, 2.0, 1.0, 0.0, None])
    assert m["win_rate"] == pytest.approx(62.5) and m["n_total"] == 4 and m["n_unparsed"] == 1
    assert (m["n_wins"], m["n_wins_base"], m["n_draws"]) == (2, 1, 1)
    assert m["discrete_win_rate"] == pytest.approx(62.5)
    # standard error as pandas' sem: std (ddof 1) of [1, 1, 0, .5] = .4787 / 2 -> 23.94
    assert m["standard_error"] == pytest.approx(23.936, abs=1e-3)
    lo, hi = m["win_rate_ci95"]
    assert 0 <= lo < 62.5 < hi <= 100


def test_length_control_removes_a_pure_length_preference():
    # The annotator prefers whichever answer is longer, nothing else: the raw win rate of a verbose
    # candidate is high, the length-controlled one is back near 50.
    import random

    r = random.Random(0)
    prefs, lr, lc = [], [], []
    for _ in range(80):
        a, b = r.randint(50, 300), r.randint(50, 600)
        p_cand = 0.9 if b > a else 0.1
        prefs.append(2.0 if r.random() < p_cand else 1.0)
        lr.append(a)
        lc.append(b)
    raw = A.win_rate(prefs)["win_rate"]
    lc_rate = A.length_controlled_win_rate(prefs, lr, lc)
    assert raw > 60 and abs(lc_rate["length_controlled_winrate"] - 50) < abs(raw - 50) / 2
    assert lc_rate["weights"]["np.tanh(std_delta_len)"] < 0  # longer output_1 (reference) -> lower preference
    assert A.length_controlled_win_rate([2.0, 1.0], [1, 2], [3, 4])["length_controlled_winrate"] is None


@pytest.mark.slow
def test_length_controlled_win_rate_equals_the_package_fit():
    """The package's own GLM code (imported in a subprocess with a pkg_resources stand-in, since
    alpaca_eval 0.6.6 imports it at module level) fits the same weights on the same data."""
    script = textwrap.dedent("""
        import sys, types, random, json
        from packaging.version import parse
        shim = types.ModuleType("pkg_resources"); shim.parse_version = parse
        sys.modules["pkg_resources"] = shim
        import numpy as np, pandas as pd
        from alpaca_eval.metrics import glm_winrate as G
        r = random.Random(3); prefs, lr, lc = [], [], []
        for i in range(60):
            l1, l2 = r.randint(50, 400), r.randint(50, 400)
            prefs.append(2.0 if r.random() < (0.35 + 0.3 * (l2 > l1)) else 1.0); lr.append(l1); lc.append(l2)
        y = np.array(prefs) - 1; d = np.array(lr, float) - np.array(lc, float)
        df = pd.DataFrame({"preference": y, "std_delta_len": d / pd.Series(d).std(), "not_gamed_baseline": True})
        test = df[["not_gamed_baseline"]].copy(); test["std_delta_len"] = 0
        info = G.GLM_INFO["length_controlled_minimal"]
        XY, Xt = G.make_dmatrix_for_model(df, test, formula=info["formula"])
        m = G.fit_LogisticRegressionCV(XY, "preference", is_ytrue_proba=True, **info["kwargs"])
        print(json.dumps({"lc": m.predict_proba(Xt)[:, 1].mean() * 100, "w": list(m.coef_[0]),
                          "prefs": prefs, "lr": lr, "lc_len": lc, "formula": info["formula"]}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"the package's GLM dependencies are missing: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    pkg = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = A.length_controlled_win_rate(pkg["prefs"], pkg["lr"], pkg["lc_len"])
    assert ours["formula"] == pkg["formula"]
    assert ours["length_controlled_winrate"] == pytest.approx(pkg["lc"], abs=1e-6)
    assert list(ours["weights"].values()) == pytest.approx(pkg["w"], abs=1e-6)


def _items(n=12):
    # candidate answers with "GOOD" are better on even ids; the reference is "GOOD" on odd ids
    return [{"id": f"p{i}", "model": "cand", "language": "en",
             "messages": [{"role": "user", "content": f"Question {i}?"}],
             "response": f"cand {'GOOD' if i % 2 == 0 else 'meh'} answer {i}",
             "reference": f"ref {'GOOD' if i % 2 else 'meh'} {i}"} for i in range(n)]


def _annotator_reply(body, n):
    """A scripted annotator: ranks first whichever output contains GOOD, in the package's format."""
    user = body["messages"][-1]["content"]
    answers = re.findall(r'"answer": """(.*?)"""', user, flags=re.S)
    best = 1 if "GOOD" in answers[0] else 2
    return ("ok", f"[{{'model': 'model_1', 'rank': {1 if best == 1 else 2}}}, "
                  f"{{'model': 'model_2', 'rank': {2 if best == 1 else 1}}}]")


def test_judging_against_the_loopback_server_maps_swapped_orders_back(tmp_path):
    from polyinstruct.infer.openai_http import OpenAIHTTPBackend
    from polyinstruct.judge.cache import JudgmentCache

    with ScriptedServer(_annotator_reply) as srv:
        be = OpenAIHTTPBackend("judge-x", base_url=srv.base_url, api_key="k", timeout=5, max_retries=2,
                               backoff_base=0.01, backoff_max=0.05, concurrency=4, seed=0)
        cache = JudgmentCache(tmp_path / "cache.jsonl")
        rows = A.judge_pairs(_items(), be, judge_name="judge-x", cache=cache, seed=7)
        assert len(srv.calls) == 12
        # the request is the annotator's system + user messages and its decoding (max_tokens 100, t=0)
        assert srv.calls[0]["messages"][0]["role"] == "system" and srv.calls[0]["max_tokens"] == 100
        again = A.judge_pairs(_items(), be, judge_name="judge-x", cache=cache, seed=7)
        assert len(srv.calls) == 12 and all(r["cached"] for r in again)  # cache: nothing asked twice
        be.close()
    swapped = [r["swapped"] for r in rows]
    assert any(swapped) and not all(swapped)  # both orders occur, recorded per prompt
    assert swapped == [A.is_swapped(7, f"p{i}") for i in range(12)]
    # canonical order: 2 = candidate better, whatever order the annotator saw
    assert [r["preference"] for r in rows] == [2.0 if i % 2 == 0 else 1.0 for i in range(12)]
    s = A.summarize(rows)["models"]["cand"]
    assert s["win_rate"] == pytest.approx(50.0) and s["n_total"] == 12 and s["n_swapped"] == sum(swapped)
    assert s["length_controlled_winrate"] is not None


def test_run_alpaca_eval_files_and_reference_system(tmp_path, monkeypatch):
    from polyinstruct.infer.openai_http import OpenAIHTTPBackend

    items = _items(6)
    cand = tmp_path / "cand.jsonl"
    write_jsonl(cand, [{k: v for k, v in it.items() if k != "reference"} for it in items])
    ref = tmp_path / "ref.jsonl"
    write_jsonl(ref, [{"id": it["id"], "response": it["reference"]} for it in items])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with ScriptedServer(_annotator_reply) as srv:
        be = OpenAIHTTPBackend("judge-x", base_url=srv.base_url, api_key="k", timeout=5, max_retries=1)
        summary = A.run_alpaca_eval(cand, tmp_path / "out", judge={"model": "judge-x", "cache_dir": str(tmp_path)},
                                    reference_path=ref, seed=3, backend=be)
        be.close()
    assert summary["annotator"] == "alpaca_eval_gpt4" and summary["seed"] == 3 and summary["n"] == 6
    assert summary["models"]["cand"]["win_rate"] == pytest.approx(50.0)
    rows = [json.loads(line) for line in (tmp_path / "out" / "annotations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [it["id"] for it in items] and all("swapped" in r for r in rows)
    # a candidate the reference system did not answer is an error naming file, line and field
    write_jsonl(ref, [{"id": "p0", "response": "x"}])
    with pytest.raises(DataError, match=r"cand.jsonl:2: reference: no prediction with this id"):
        A.read_items(cand, ref)


@pytest.mark.slow
def test_length_controlled_win_rate_with_unparsed_verdicts_equals_the_package(tmp_path):
    """The package's own get_length_controlled_winrate on annotations where some verdicts are
    unparsed (preference NaN): it standardises the length difference over all rows, then fits on
    the parsed ones. Its hub download (instruction difficulty, unused by the minimal GLM) is
    replaced by a local file, as the machine is offline."""
    script = textwrap.dedent("""
        import sys, types, random, json
        from packaging.version import parse
        shim = types.ModuleType("pkg_resources"); shim.parse_version = parse
        sys.modules["pkg_resources"] = shim
        import numpy as np, pandas as pd
        from alpaca_eval.metrics import glm_winrate as G
        n = 200
        pd.DataFrame({"model": ["x"] * n, "index": range(n), "instruction_difficulty": [0.0] * n}).to_csv(
            sys.argv[1], index=False)
        G.hf_hub_download = lambda **kw: sys.argv[1]
        r = random.Random(5); rows = []
        for i in range(n):
            l1, l2 = r.randint(50, 400), r.randint(50, 900)
            p = 2.0 if r.random() < (0.15 + 0.7 * (l2 > l1)) else 1.0
            if i % 7 == 3 or (i % 5 == 0 and l2 > l1):
                p = float("nan")  # unparsed verdicts, more of them among longer candidates
            rows.append({"preference": p, "output_1": "a" * l1, "output_2": "b" * l2, "index": i,
                         "generator_1": "ref", "generator_2": "cand", "annotator": "judge"})
        m = G.get_length_controlled_winrate(pd.DataFrame(rows), glm_name="length_controlled_minimal",
                                            save_weights_dir=None, is_warn_extreme_changes=False)
        print(json.dumps({"lc": float(m["length_controlled_winrate"]), "wr": float(m["win_rate"]),
                          "prefs": [None if p != p else p for p in (x["preference"] for x in rows)],
                          "lr": [len(x["output_1"]) for x in rows], "lc_len": [len(x["output_2"]) for x in rows]}))
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "df_gamed.csv")], capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"the package's GLM dependencies are missing: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    pkg = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sum(p is None for p in pkg["prefs"]) == 55
    ours = A.length_controlled_win_rate(pkg["prefs"], pkg["lr"], pkg["lc_len"])
    # standardising over the parsed rows only gave 50.9411 against the package's 50.9395
    assert ours["length_controlled_winrate"] == pytest.approx(pkg["lc"], abs=1e-8)
    assert A.win_rate(pkg["prefs"])["win_rate"] == pytest.approx(pkg["wr"], abs=1e-9)
