"""Budget allocation equals brute force on small grids, respects floors and caps, and
the mixture it writes makes `data mix` take exactly the allocated amounts."""

from __future__ import annotations

import json
import math
import random

import pytest
import yaml

from polyinstruct.analysis.allocate import allocate, brute_force, mixture_config
from polyinstruct.analysis.laws import LAWS
from polyinstruct.errors import ConfigError


def _random_concave(rng: random.Random):
    if rng.random() < 0.5:
        p = (rng.uniform(-5, 5), rng.uniform(0.1, 5), rng.uniform(0.05, 10))
        return lambda x, p=p: float(LAWS.get("log").predict([x], p)[0])
    p = (rng.uniform(0, 50), rng.uniform(0.1, 40), rng.uniform(0.05, 2))
    return lambda x, p=p: float(LAWS.get("power").predict([x], p)[0])


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("objective", ["sum", "min"])
def test_greedy_equals_brute_force(seed, objective):
    rng = random.Random(seed)
    langs = ["fr", "ru", "zh", "bg"][: rng.randint(2, 4)]
    curves = {lang: _random_concave(rng) for lang in langs}
    budget = rng.randint(6, 16)
    step = rng.choice([1, 1, 2])
    floors = {langs[0]: rng.randint(0, 3)}
    caps = {langs[-1]: rng.randint(3, 8)}
    got = allocate(curves, budget, objective=objective, floors=floors, caps=caps, step=step)
    want, _ = brute_force(curves, budget, objective=objective, floors=floors, caps=caps, step=step)
    assert got.value == pytest.approx(want, abs=1e-9)
    assert got.amounts[langs[0]] >= floors[langs[0]] and got.amounts[langs[-1]] <= caps[langs[-1]]
    assert sum(got.amounts.values()) <= budget
    assert all((v - floors.get(k, 0)) % step == 0 for k, v in got.amounts.items())
    dp = allocate(curves, budget, objective=objective, floors=floors, caps=caps, step=step, concave=False)
    assert dp.value == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("objective", ["sum", "min"])
def test_exact_search_handles_non_concave_curves(objective):
    curves = {"fr": lambda x: 0.02 * x * x, "ru": lambda x: math.sqrt(x), "zh": lambda x: 1.0 if x >= 5 else 0.0}
    for budget in (4, 7, 12):
        got = allocate(curves, budget, objective=objective, concave=False)
        want, _ = brute_force(curves, budget, objective=objective)
        assert got.value == pytest.approx(want)


def test_uniform_gain_and_spending():
    curves = {"a": lambda x: 10 * math.log1p(x), "b": lambda x: math.log1p(x)}
    res = allocate(curves, 100)
    d = res.to_dict()
    assert sum(res.amounts.values()) == 100 and res.unspent == 0
    assert res.amounts["a"] > res.amounts["b"]
    assert d["uniform"]["amounts"] == {"a": 50, "b": 50}
    assert d["gain_over_uniform"] == pytest.approx(res.value - (11 * math.log1p(50)))
    assert d["gain_over_uniform"] > 0


def test_caps_that_cannot_hold_the_budget_leave_it_unspent():
    res = allocate({"a": math.log1p, "b": math.log1p}, 50, caps={"a": 10, "b": 15})
    assert res.amounts == {"a": 10, "b": 15} and res.unspent == 25


@pytest.mark.parametrize("kw,msg", [
    ({"floors": {"a": 30, "b": 30}}, "floors add up"),
    ({"floors": {"a": 5}, "caps": {"a": 3}}, "below its floor"),
    ({"floors": {"xx": 1}}, "without a fitted law"),
    ({"objective": "max"}, "objective"),
    ({"step": 0}, "step"),
])
def test_infeasible_constraints_fail_clearly(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        allocate({"a": math.log1p, "b": math.log1p}, 50, **kw)


def test_mixture_config_reproduces_the_allocation(tmp_path):
    from polyinstruct.data.api import mix_from_config

    res = allocate({"fr": lambda x: 3 * math.log1p(x), "ru": lambda x: math.log1p(x), "zh": lambda x: 2 * math.log1p(x)},
                   30, floors={"ru": 4})
    cfg = mixture_config(res)
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(cfg))
    man = mix_from_config(path, tmp_path / "out")
    assert man["languages"] == {k: v for k, v in res.amounts.items() if v}
    assert sum(1 for _ in open(tmp_path / "out" / "data.jsonl")) == 30
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["output"]["records"] == 30
