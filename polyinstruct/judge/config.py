"""Judge configuration (validated) and the judge-backend factory.

``judge`` may be a dict, a YAML path, or a bare model name (then the
OpenAI-compatible endpoint from ``$OPENAI_BASE_URL`` is used). Keys not listed
in ``JudgeConfig`` are errors with a did-you-mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from polyinstruct.config import load_yaml, validate_config
from polyinstruct.errors import ConfigError
from polyinstruct.infer.backend import DecodingParams


class JudgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["single", "pairwise"] = "single"
    template: str | None = None  # default: single-1to3 or pairwise
    prompt_language: str = "en"  # a variant code, or "auto" = the question's language when available
    backend: str = "openai_http"
    model: str
    # openai_http options
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = Field(120.0, gt=0, allow_inf_nan=False)  # seconds per request
    max_retries: int = Field(6, ge=0)
    backoff_base: float = Field(1.0, ge=0, allow_inf_nan=False)
    backoff_max: float = Field(60.0, ge=0, allow_inf_nan=False)
    concurrency: int = Field(8, ge=1)
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)  # USD per 1M tokens
    # options of a local backend (hf, vllm), passed to polyinstruct.infer.load_backend
    backend_options: dict[str, Any] = Field(default_factory=dict)
    # judging
    max_new_tokens: int = 1024
    temperature: float = 0.0
    max_parse_retries: int = Field(2, ge=0)
    retry_unparsed: bool = False
    cache_dir: str | None = None
    seed: int = 0
    both_orders: bool = False
    # the language penalty (judge/scores.py): recorded with the judgments and the experiment's scoring
    language_policy: Literal["strict", "lenient"] = "strict"
    lenient_close_pairs: bool = False

    def template_name(self) -> str:
        return self.template or ("pairwise" if self.mode == "pairwise" else "single-1to3")

    def decoding(self) -> DecodingParams:
        return DecodingParams(max_new_tokens=self.max_new_tokens, do_sample=self.temperature > 0,
                              temperature=self.temperature if self.temperature > 0 else 1.0)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        from polyinstruct.infer import BACKENDS
        from polyinstruct.registry import suggest

        if v not in BACKENDS:  # one registry for every generation backend (docs/extending.md)
            raise ValueError(f"unknown generation backend {v!r}.{suggest(v, BACKENDS.names())} "
                             f"Known: {', '.join(BACKENDS.names())}")
        return v


def resolve_judge_config(judge: dict | str | JudgeConfig, overrides: dict[str, Any] | None = None) -> JudgeConfig:
    if isinstance(judge, JudgeConfig):
        data, src = judge.model_dump(), None
    elif isinstance(judge, dict):
        data, src = dict(judge), None
    elif isinstance(judge, str) and Path(judge).suffix in (".yaml", ".yml"):
        data, src = load_yaml(judge), judge
    elif isinstance(judge, str) and judge:
        data, src = {"model": judge}, None
    else:
        raise ConfigError("judge must be a dict, a YAML path or a model name", field="judge")
    data.update(overrides or {})
    return validate_config(JudgeConfig, data, file=src)


def build_backend(cfg: JudgeConfig) -> Any:
    """The judge model's generation backend, from the one backend registry (``polyinstruct.infer.BACKENDS``).

    ``backend: openai_http`` gets the judge's HTTP settings (retries, concurrency, prices);
    any other registered backend (``hf``, ``vllm``) gets ``backend_options``. An unknown
    name fails with the registry's did-you-mean.
    """
    from polyinstruct.infer import BACKENDS, load_backend  # imports transformers lazily, only for local judges

    BACKENDS.get(cfg.backend)
    if cfg.backend == "openai_http":
        options: dict[str, Any] = dict(base_url=cfg.base_url, api_key_env=cfg.api_key_env, timeout=cfg.timeout,
                                       max_retries=cfg.max_retries, backoff_base=cfg.backoff_base,
                                       backoff_max=cfg.backoff_max, concurrency=cfg.concurrency, prices=cfg.prices,
                                       seed=cfg.seed)
        options.update(cfg.backend_options)
    else:
        options = dict(cfg.backend_options)
    return load_backend({"backend": cfg.backend, "model": cfg.model, **options})


def cache_path(cfg: JudgeConfig) -> Path:
    from polyinstruct.judge.cache import default_cache_dir

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in cfg.model)[-120:]
    return Path(cfg.cache_dir or default_cache_dir()) / f"{safe}.jsonl"
