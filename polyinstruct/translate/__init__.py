"""Machine translation of datasets: ``polyinstruct data translate`` (docs/translation.md).

Depends on ``data`` (records, readers), ``lang`` (language ID for the gates) and
``infer`` (generation backends for causal-LM and HTTP engines); ``data`` never
imports this package except lazily to register the subcommand.

- ``protect``: protected spans (code, URLs, placeholders, markdown structure);
- ``engines``: the ``ENGINES`` registry (marian, nllb, m2m100, hf, vllm, openai);
- ``gates``: quality gates and reject reasons;
- ``cache``: the translation cache (content-hash keys);
- ``run``: ``translate_dataset`` (cache, resume by id, outputs, summary, catalogue).
"""

from polyinstruct.translate.engines import ENGINES, load_engine
from polyinstruct.translate.gates import REASONS, GateConfig
from polyinstruct.translate.cache import TranslationCache
from polyinstruct.translate.run import translate_dataset

__all__ = ["ENGINES", "GateConfig", "REASONS", "TranslationCache", "load_engine", "translate_dataset"]
