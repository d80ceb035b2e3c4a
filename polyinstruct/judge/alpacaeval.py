"""AlpacaEval-style pairwise judging with AlpacaEval's own annotator prompt and parsing.

The annotator (prompt template, parser, decoding settings) is read from the
installed ``alpaca-eval`` package (``pip install 'polyinstruct[alpaca-eval]'``):
nothing of it is copied into this repository. The package's own Python modules
are not imported (0.6.6 needs ``pkg_resources``, which current setuptools no
longer ships), only its data files, located with ``importlib.util.find_spec``.

Protocol, as AlpacaEval defines it (see docs/studies.md, study 3):
- ``output_1`` is the reference system's answer, ``output_2`` the candidate's;
  the annotator sees them in an order drawn per prompt from ``seed`` (recorded as
  ``swapped``) and its verdict is mapped back to that canonical order.
- ``preference``: 1 = reference better, 2 = candidate better, 1.5 = draw (the
  package's 0). Win rate = mean(preference - 1) x 100 over parsed verdicts, with
  the package's standard error, win/loss/draw counts and discrete win rate;
  polyinstruct adds its 95% bootstrap interval (polyinstruct.stats).
- Length-controlled win rate (AlpacaEval 2): a logistic GLM of the preference on
  tanh(standardised length difference) plus an intercept (the difference standardised
  over every row, unparsed verdicts included, as the package does), fitted like the package
  (L1, liblinear, no intercept term beyond the constant column, cross-validated C
  with GroupKFold(5) on the continuous-label log loss), then predicted at zero
  length difference. This is the package's ``length_controlled_minimal`` GLM:
  its default GLM also uses AlpacaEval's precomputed per-instruction difficulty,
  which exists only for AlpacaEval's own 805 instructions.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from polyinstruct.errors import ConfigError, MissingDependencyError, UnknownNameError
from polyinstruct.infer.backend import DecodingParams
from polyinstruct.judge.ask import Request, ask_all
from polyinstruct.judge.cache import JudgmentCache, judgment_key
from polyinstruct.registry import suggest
from polyinstruct.stats import bootstrap_mean

DEFAULT_ANNOTATOR = "alpaca_eval_gpt4"
INSTALL_HINT = "pip install 'polyinstruct[alpaca-eval]' (the alpaca-eval package ships the annotator configs)"
GLM_FORMULA = "np.tanh(std_delta_len) + not_gamed_baseline.astype(float) - 1"  # length_controlled_minimal


def package_dir() -> Path:
    """The installed alpaca_eval folder, found without importing (executing) the package."""
    spec = importlib.util.find_spec("alpaca_eval")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"AlpacaEval judging needs the alpaca-eval package: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def annotator_names() -> list[str]:
    root = package_dir() / "evaluators_configs"
    return sorted(p.name for p in root.iterdir() if (p / "configs.yaml").exists())


@dataclass
class Annotator:
    """One AlpacaEval annotator config as the package ships it."""

    name: str
    prompt_template: str          # the template text, with {instruction} {output_1} {output_2}
    template_file: str
    parser: str
    parser_kwargs: dict[str, Any] = field(default_factory=dict)
    completions_kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def decoding(self) -> DecodingParams:
        kw = self.completions_kwargs
        temp = float(kw.get("temperature", 0) or 0)
        return DecodingParams(max_new_tokens=int(kw.get("max_tokens", 100)), do_sample=temp > 0,
                              temperature=temp if temp > 0 else 1.0)

    def render(self, instruction: str, output_1: str, output_2: str) -> list[dict[str, str]]:
        """The annotator's chat messages (the package's ``make_prompts`` then ``prompt_to_chatml``)."""
        values = {"instruction": str(instruction), "output_1": str(output_1), "output_2": str(output_2)}
        # Each placeholder's first occurrence is replaced, as the package's make_prompts does (not
        # str.format: the templates hold literal braces), but in one pass, so a "{output_1}" inside
        # an instruction stays text instead of being filled in as the package's sequential replace would.
        done: set[str] = set()

        def fill(m: re.Match) -> str:
            key = m.group(1)
            if key in values and key not in done:
                done.add(key)
                return values[key]
            return m.group(0)

        return prompt_to_chatml(re.sub(r"{([^ \s]+?)}", fill, self.prompt_template))

    def parse(self, completion: str) -> float | None:
        """The annotator's preference for output_1 (1) or output_2 (2); None when unparsable."""
        if self.parser == "ranking_parser":
            return ranking_parser(completion, **self.parser_kwargs)
        raise ConfigError(f"parser {self.parser!r} is not supported", file=self.source, field="fn_completion_parser")


SUPPORTED_PARSERS = ("ranking_parser",)


def load_annotator(name: str = DEFAULT_ANNOTATOR) -> Annotator:
    """Read ``evaluators_configs/<name>/configs.yaml`` and its prompt template from the installed package."""
    from polyinstruct.yamlio import safe_load

    root = package_dir() / "evaluators_configs"
    cfg_path = root / name / "configs.yaml"
    if not cfg_path.exists():
        names = annotator_names()
        raise UnknownNameError(f"unknown AlpacaEval annotator {name!r}.{suggest(name, names)} "
                               f"Known: {', '.join(names)}")
    data = safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    if name not in data:
        raise ConfigError(f"no top-level key {name!r}", file=str(cfg_path), field=name)
    cfg = data[name]
    parser = cfg.get("fn_completion_parser")
    if parser not in SUPPORTED_PARSERS:
        why = (" (it reads token log-probabilities, which polyinstruct's judge backends do not return)"
               if parser == "logprob_parser" else " (function-calling annotators are not supported)"
               if parser == "pipeline_meta_parser" else "")
        usable = [n for n in annotator_names() if _parser_of(root / n / "configs.yaml") in SUPPORTED_PARSERS]
        raise ConfigError(f"annotator {name!r} uses {parser!r}{why}; usable annotators: {', '.join(usable)}",
                          file=str(cfg_path), field=f"{name}.fn_completion_parser")
    template_file = root / cfg["prompt_template"]
    return Annotator(name=name, prompt_template=template_file.read_text(encoding="utf-8"),
                     template_file=str(template_file), parser=parser,
                     parser_kwargs=dict(cfg.get("completion_parser_kwargs") or {}),
                     completions_kwargs=dict(cfg.get("completions_kwargs") or {}), source=str(cfg_path))


def _parser_of(path: Path) -> str | None:
    from polyinstruct.yamlio import safe_load

    try:
        data = safe_load(path.read_text(encoding="utf-8")) or {}
        return next(iter(data.values())).get("fn_completion_parser")
    except Exception:  # noqa: BLE001 - a listing helper; an odd config is simply not usable
        return None


# --- the package's helpers, re-implemented (its modules cannot be imported, see module doc) ------

def prompt_to_chatml(prompt: str, start_token: str = "<|im_start|>", end_token: str = "<|im_end|>") -> list[dict]:
    """AlpacaEval's ``utils.prompt_to_chatml``: ``<|im_start|>role\\ncontent<|im_end|>`` blocks to messages."""
    prompt = prompt.strip()
    if not (prompt.startswith(start_token) and prompt.endswith(end_token)):
        raise ConfigError("annotator prompt is not in ChatML (<|im_start|>role ... <|im_end|>)")
    messages = []
    for part in prompt.split(start_token)[1:]:
        head, _, rest = part.partition("\n")
        role = head.strip()
        content = rest.split(end_token, 1)[0].strip()
        extra: dict[str, str] = {}
        if role.startswith("system") and role != "system":
            extra = dict(kv.split("=", 1) for kv in role.split("system", 1)[-1].split())
            role = "system"
        messages.append({"role": role, "content": content, **extra})
    return messages


def ranking_parser(completion: str, model_1_name: str = "model_1") -> float | None:
    """AlpacaEval's ``ranking_parser``: the rank (1 or 2) given to ``model_1``, None (the package's NaN)
    otherwise. ``ast.literal_eval`` reads literals only: nothing in a reply executes."""
    if not completion or not completion.strip():
        return None
    try:
        ordered = ast.literal_eval(completion.strip())
        rank = [c for c in ordered if c["model"] == model_1_name][0]["rank"]
    except (ValueError, SyntaxError, TypeError, KeyError, IndexError, MemoryError, RecursionError):
        return None
    return float(rank) if rank in (1, 2) else None


# --- judging -------------------------------------------------------------------------------------

def is_swapped(seed: int, item_id: str) -> bool:
    """Whether the candidate is shown first (as output_1) for this prompt: a seeded, recorded draw."""
    return random.Random(f"alpaca_eval:{seed}:{item_id}").random() < 0.5


def _instruction(messages: list[dict[str, str]]) -> str:
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def judge_pairs(items: list[dict[str, Any]], backend: Any, *, annotator: Annotator | str = DEFAULT_ANNOTATOR,
                judge_name: str, cache: JudgmentCache | None = None, seed: int = 0,
                reference_field: str = "reference", on_done: Callable[[int], None] | None = None,
                max_parse_retries: int = 2) -> list[dict[str, Any]]:
    """One annotation per item (``id``, ``messages``, ``response`` and the reference system's answer in
    ``reference_field``), in input order, with ``preference`` in AlpacaEval's canonical order."""
    ann = load_annotator(annotator) if isinstance(annotator, str) else annotator
    cache = JudgmentCache(None) if cache is None else cache  # (an empty cache is falsy: no `or`)
    plans = []
    for it in items:
        if it.get(reference_field) is None:
            raise ConfigError(f"item {it.get('id')!r} has no {reference_field!r}: the reference system's answer "
                              "is needed for pairwise judging", field=reference_field)
        swapped = is_swapped(seed, str(it["id"]))
        ref, cand = str(it[reference_field]), str(it.get("response") or "")
        out1, out2 = (cand, ref) if swapped else (ref, cand)
        msgs = ann.render(_instruction(it.get("messages") or []), out1, out2)
        key = judgment_key(judge_name, f"alpaca_eval:{ann.name}", 1, "en", msgs)
        plans.append((it, swapped, Request(key=key, messages=msgs, parse=ann.parse)))
    answers = ask_all(backend, [r for _, _, r in plans], ann.decoding(), cache,
                      max_parse_retries=max_parse_retries, on_done=on_done)
    rows = []
    for it, swapped, req in plans:
        rec = answers[req.key]
        shown = rec["value"]
        pref = None if shown is None else (3.0 - shown if swapped else shown)
        rows.append({"id": it["id"], "model": it.get("model"), "language": it.get("language"),
                     "annotator": ann.name, "judge": judge_name, "seed": seed, "swapped": swapped,
                     "preference": pref, "parsed": rec["parsed"], "raw": rec["raw"], "error": rec["error"],
                     "cached": rec["cached"], "len_reference": len(str(it[reference_field])),
                     "len_candidate": len(str(it.get("response") or ""))})
    return rows


# --- metrics -------------------------------------------------------------------------------------

def win_rate(preferences: list[float | None]) -> dict[str, Any]:
    """AlpacaEval's ``get_winrate`` (absolute scoring rule) on canonical preferences, plus a bootstrap CI."""
    prefs = [1.5 if p == 0 else p for p in preferences if p is not None and not math.isnan(p)]
    if not prefs:
        return {"win_rate": None, "n_total": 0, "n_unparsed": len(preferences)}
    x = [p - 1 for p in prefs]
    n = len(x)
    mean = sum(x) / n
    sem = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1)) / math.sqrt(n) if n > 1 else float("nan")
    ci = bootstrap_mean(x)
    return {"win_rate": mean * 100, "standard_error": sem * 100,
            "win_rate_ci95": [ci.low * 100, ci.high * 100],
            "n_wins": sum(v > 0.5 for v in x), "n_wins_base": sum(v < 0.5 for v in x),
            "n_draws": sum(v == 0.5 for v in x), "n_total": n,
            "discrete_win_rate": sum(1.0 if v > 0.5 else 0.5 if v == 0.5 else 0.0 for v in x) / n * 100,
            "n_unparsed": len(preferences) - n}


def length_controlled_win_rate(preferences: list[float | None], len_reference: list[int],
                               len_candidate: list[int], n_splits: int = 5) -> dict[str, Any]:
    """AlpacaEval 2's length-controlled win rate with the ``length_controlled_minimal`` GLM (module doc).

    Returns ``{"length_controlled_winrate", "lc_standard_error", "weights"}``, or a ``reason`` with a None
    rate when the GLM cannot be fitted (fewer parsed verdicts than folds, no length variation).
    """
    try:
        import numpy as np
        import sklearn
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.metrics import make_scorer
        from sklearn.model_selection import GroupKFold
    except ImportError as e:
        raise MissingDependencyError(f"the length-controlled win rate needs scikit-learn: {INSTALL_HINT}") from e
    rows = [(1.5 if p == 0 else p, a, b) for p, a, b in zip(preferences, len_reference, len_candidate)
            if p is not None and not math.isnan(p)]
    if len(rows) < n_splits:
        return {"length_controlled_winrate": None, "reason": f"needs at least {n_splits} parsed verdicts"}
    y = np.array([p - 1 for p, _, _ in rows], dtype=float)
    delta = np.array([a - b for _, a, b in rows], dtype=float)  # len(output_1) - len(output_2)
    # The package standardises the length difference over every annotated row, unparsed verdicts
    # included (_get_featurized_data), and only then drops the rows without a preference.
    sd = np.array([a - b for a, b in zip(len_reference, len_candidate)], dtype=float).std(ddof=1)
    if not sd > 0:
        return {"length_controlled_winrate": None, "reason": "all length differences are equal"}
    X = np.column_stack([np.tanh(delta / sd), np.ones(len(rows))])
    # The package's fit_LogisticRegressionCV with continuous labels: every row twice, labelled 1 with
    # weight y and 0 with weight 1 - y, folds grouped by row, scored by the continuous log loss.
    Xd = np.vstack([X, X])
    yd = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    true_prob = np.concatenate([y, 1 - y])
    groups = np.concatenate([np.arange(len(y)), np.arange(len(y))])

    def logloss_continuous(y_true, y_pred, true_prob):
        target = np.where(y_true == 1, true_prob, 1 - true_prob)
        p = np.clip(y_pred, 1e-15, 1 - 1e-15)
        return -np.mean(target * np.log(p) + (1 - target) * np.log(1 - p))

    import warnings

    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        # the package's settings, as they are: newer scikit-learn warns about penalty= and about
        # liblinear convergence on tiny sets; neither changes the fit
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        scorer = make_scorer(logloss_continuous, response_method="predict_proba",
                             greater_is_better=False).set_score_request(true_prob=True)
        model = LogisticRegressionCV(cv=GroupKFold(n_splits=n_splits), scoring=scorer, random_state=123,
                                     dual=False, penalty="l1", solver="liblinear", fit_intercept=False)
        model.set_fit_request(sample_weight=True)
        model.fit(Xd, yd, sample_weight=true_prob, groups=groups, true_prob=true_prob)
    test = np.column_stack([np.zeros(len(y)), np.ones(len(y))])  # no length difference
    pred = model.predict_proba(test)[:, 1]
    se = float(np.std(pred, ddof=1) / math.sqrt(len(pred))) if len(pred) > 1 else float("nan")
    return {"length_controlled_winrate": float(pred.mean() * 100), "lc_standard_error": se * 100,
            "glm": "length_controlled_minimal", "formula": GLM_FORMULA,
            "weights": {"np.tanh(std_delta_len)": float(model.coef_[0][0]),
                        "not_gamed_baseline.astype(float)": float(model.coef_[0][1])}}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Win rate and length-controlled win rate per candidate model (rows from ``judge_pairs``)."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(str(r.get("model")), []).append(r)
    out: dict[str, Any] = {"models": {}}
    for model, rs in sorted(by_model.items()):
        prefs = [r["preference"] for r in rs]
        m = win_rate(prefs)
        m.update(length_controlled_win_rate(prefs, [r["len_reference"] for r in rs],
                                            [r["len_candidate"] for r in rs]))
        m["n_swapped"] = sum(bool(r["swapped"]) for r in rs)
        out["models"][model] = m
    if rows:
        out.update(annotator=rows[0]["annotator"], seed=rows[0]["seed"], judge=rows[0]["judge"])
    return out


# --- files in, files out ---------------------------------------------------------------------------

def read_items(predictions_path: str | Path, reference_path: str | Path | None = None) -> list[dict[str, Any]]:
    """Candidate predictions, each with the reference system's answer under ``reference``.

    Without ``reference_path`` the predictions' own ``reference`` field is the reference system
    (e.g. the evaluation set's reference answers); with it, that file's ``response`` for the same
    ``id`` is (e.g. another model's predictions.jsonl). A candidate without a reference is an error
    naming the file and line, never silently skipped.
    """
    from polyinstruct.errors import DataError
    from polyinstruct.fileio import iter_jsonl_numbered

    refs: dict[str, str] | None = None
    if reference_path is not None:
        refs = {}
        for line, r in iter_jsonl_numbered(reference_path):
            if "id" not in r or not isinstance(r.get("response"), str):
                raise DataError("needs 'id' and a 'response' string", path=str(reference_path), line=line,
                                field="response")
            refs[str(r["id"])] = r["response"]
    items = []
    for line, r in iter_jsonl_numbered(predictions_path):
        for f in ("id", "messages", "response"):
            if f not in r:
                raise DataError("missing field", path=str(predictions_path), line=line, field=f)
        ref = refs.get(str(r["id"])) if refs is not None else r.get("reference")
        if not isinstance(ref, str):
            where = f"no prediction with this id in {reference_path}" if refs is not None else "no 'reference' string"
            raise DataError(where, path=str(predictions_path), line=line, field="reference")
        items.append({**r, "reference": ref})
    if not items:
        raise DataError("no predictions", path=str(predictions_path))
    return items


def run_alpaca_eval(predictions_path: str | Path, out_dir: str | Path, *, judge: Any, annotator: str = DEFAULT_ANNOTATOR,
                    reference_path: str | Path | None = None, seed: int = 0, backend: Any = None,
                    progress: bool = False) -> dict[str, Any]:
    """Annotate every prediction against the reference system; writes ``annotations.jsonl`` and
    ``summary.json`` (win rate, LC win rate, the annotator and the order seed) into ``out_dir``."""
    from polyinstruct.fileio import write_json, write_jsonl
    from polyinstruct.judge.config import build_backend, cache_path, resolve_judge_config

    cfg = resolve_judge_config(judge)
    ann = load_annotator(annotator)
    items = read_items(predictions_path, reference_path)
    own = backend is None
    backend = backend or build_backend(cfg)
    bar = None
    if progress:
        from polyinstruct.progress import progress_bar

        bar = progress_bar(len(items), desc=f"alpaca_eval ({ann.name})", unit="pair")
    try:
        rows = judge_pairs(items, backend, annotator=ann, judge_name=f"{cfg.backend}:{cfg.model}",
                           cache=JudgmentCache(cache_path(cfg)), seed=seed,
                           on_done=(lambda k: bar.update(k)) if bar else None)
    finally:
        if bar:
            bar.close()
        if own and hasattr(backend, "close"):
            backend.close()
    summary = summarize(rows)
    summary.update(predictions=str(predictions_path), reference=str(reference_path or "predictions' reference field"),
                   annotator_config=ann.source, annotator_template=ann.template_file,
                   annotator_model=ann.completions_kwargs.get("model_name"), n=len(rows),
                   unparsed=sum(not r["parsed"] and not r["error"] for r in rows),
                   errors=sum(bool(r["error"]) for r in rows))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "annotations.jsonl", rows)
    write_json(out / "summary.json", summary)
    return summary
