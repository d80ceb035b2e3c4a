"""Inference: one generation interface (``GenerationBackend``) and its backends.

``load_backend`` is how every consumer (predict, chat, serve, judges) gets a backend:

    load_backend("path/to/run")                        # hf (default)
    load_backend("vllm:path/to/run", tensor_parallel_size=2)
    load_backend("openai_http:my-model", base_url="http://127.0.0.1:8000/v1")
    load_backend({"backend": "hf", "model": "path", "adapter": "path/adapter"})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyinstruct.errors import ConfigError, MissingDependencyError
from polyinstruct.infer.backend import (
    DECODING_PRESETS,
    DecodingParams,
    Generation,
    GenerationBackend,
)
from polyinstruct.registry import Registry

__all__ = ["BACKENDS", "DECODING_PRESETS", "DecodingParams", "Generation", "GenerationBackend", "load_backend"]

# name -> factory(model, **kwargs) -> GenerationBackend. Factories import lazily so the
# optional extras (vllm) are only needed when chosen.
BACKENDS: Registry[Callable[..., GenerationBackend]] = Registry("generation backend")


@BACKENDS.register("hf")
def _hf(model: str, **kw: Any) -> GenerationBackend:
    from polyinstruct.infer.hf import HFBackend

    return HFBackend.from_path(model, **kw)


@BACKENDS.register("vllm")
def _vllm(model: str, **kw: Any) -> GenerationBackend:
    from polyinstruct.infer.vllm_backend import VLLMBackend

    return VLLMBackend.from_path(model, **kw)


@BACKENDS.register("openai_http")
def _openai_http(model: str, **kw: Any) -> GenerationBackend:
    try:
        from polyinstruct.infer.openai_http import OpenAIHTTPBackend
    except ModuleNotFoundError as e:
        if e.name != "polyinstruct.infer.openai_http":
            raise MissingDependencyError(f"openai_http backend needs {e.name!r}: pip install {e.name}") from None
        raise MissingDependencyError("the openai_http backend is not part of this installation") from None
    return OpenAIHTTPBackend(model, **kw)


def load_backend(spec: str | dict[str, Any], **kw: Any) -> GenerationBackend:
    """Build a backend from ``"[backend:]model"`` or ``{"backend": ..., "model": ..., **options}``.

    A bare string is a model for the ``hf`` backend; an ``http(s)://`` URL is an
    ``openai_http`` endpoint (its model name from ``model=``, else ``"default"``).
    Keyword arguments are passed to the backend's constructor.
    """
    if isinstance(spec, dict):
        opts = dict(spec)
        if "model" not in opts:
            raise ConfigError("backend spec needs a 'model' field", field="backend.model")
        name = opts.pop("backend", "hf")
        model = opts.pop("model")
        opts.update(kw)
        return BACKENDS.get(name)(str(model), **opts)
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"backend spec must be a non-empty string or dict, got {spec!r}", field="backend")
    if spec.startswith(("http://", "https://")):
        opts = dict(kw)
        return BACKENDS.get("openai_http")(opts.pop("model", "default"), base_url=spec, **opts)
    head, sep, rest = spec.partition(":")
    if sep and head in BACKENDS and rest:
        return BACKENDS.get(head)(rest, **kw)
    if sep and rest and "/" not in head and "\\" not in head and len(head) > 1 and not rest.startswith("\\"):
        BACKENDS.get(head)  # "hff:path" -> unknown backend, with a did-you-mean
    return BACKENDS.get("hf")(spec, **kw)
