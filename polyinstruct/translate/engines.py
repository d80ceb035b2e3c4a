"""Translation engines behind one small interface (registry ``ENGINES``).

``engine.translate(texts, src, tgt, on_result=None) -> [str | Exception]``: one
translation per text, in order; a failed item is its exception (the caller
leaves it untranslated, uncached, for the next run). ``on_result(i, result)`` is
called as items finish, so the cache is written before a kill can lose it.
``engine.key`` names everything that changes the output (engine, model, prompt
version, decoding): it is part of the cache key.

Engines (``--engine NAME --model M``):

- ``marian``, ``nllb``, ``m2m100``: sequence-to-sequence translation models through
  transformers, each with its language-code convention (``translate.languages``).
  ``--model`` may hold ``{src}`` and ``{tgt}`` for per-pair models
  (``Helsinki-NLP/opus-mt-{src}-{tgt}``).
- ``hf``, ``vllm``: any causal LM through polyinstruct's generation backends
  (``polyinstruct.infer``) with a translation prompt: ``chat`` (an instruction as a
  user turn, rendered with the model's template) or ``completion`` (a plain
  "English: ... / French:" continuation, for base models).
- ``openai``: any OpenAI-compatible chat endpoint (``polyinstruct.infer.openai_http``),
  with retries, a bounded thread pool and the key from an environment variable.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Protocol

from polyinstruct.errors import ConfigError, MissingDependencyError, PolyinstructError
from polyinstruct.registry import Registry
from polyinstruct.translate.languages import language_name, m2m_code, marian_tokens, nllb_code

log = logging.getLogger(__name__)

OnResult = Callable[[int, Any], None]
PROMPT_VERSION = "v1"

CHAT_PROMPT = (
    "Translate the following text from {src_name} to {tgt_name}. Keep every tag such as <x1/> exactly as it is, "
    "in the right place. Keep numbers as they are. Reply with the {tgt_name} translation only, nothing else.\n\n"
    "{text}"
)
COMPLETION_PROMPT = "Translate from {src_name} to {tgt_name}.\n{src_name}: {text}\n{tgt_name}:"


class Engine(Protocol):
    name: str
    key: str
    batch_size: int

    def translate(self, texts: list[str], src: str, tgt: str, on_result: OnResult | None = None) -> list[Any]:
        ...

    def close(self) -> None:
        ...


def _clean(text: str, tgt: str) -> str:
    """Trim what chat models add around a translation: whitespace and a leading "French:" label."""
    text = text.strip()
    label = re.match(rf"^(?:{re.escape(language_name(tgt))}|translation)\s*(?:translation)?\s*:\s*", text, re.I)
    if label:
        text = text[label.end():].strip()
    return text


# --------------------------------------------------------------------------------------------
class LLMEngine:
    """A causal LM through a ``GenerationBackend`` (hf, vllm, openai_http) and a translation prompt."""

    def __init__(self, backend: Any, *, name: str, model: str, prompt_style: str = "chat",
                 max_new_tokens: int = 512, batch_size: int = 16, params: Any = None):
        from polyinstruct.infer.backend import DecodingParams

        if prompt_style not in ("chat", "completion"):
            raise ConfigError(f"prompt_style must be chat or completion, got {prompt_style!r}", field="prompt_style")
        if prompt_style == "completion" and not hasattr(backend, "generate_text"):
            raise ConfigError(f"the {name} engine has no raw-completion mode; use prompt_style=chat",
                              field="prompt_style")
        self.backend, self.name, self.model = backend, name, model
        self.prompt_style, self.batch_size = prompt_style, batch_size
        stop = ["\n"] if prompt_style == "completion" else []
        self.params = params or DecodingParams(max_new_tokens=max_new_tokens, stop=stop)
        self.key = f"{name}|{model}|{prompt_style}|{PROMPT_VERSION}|max_new_tokens={self.params.max_new_tokens}"

    def prompt(self, text: str, src: str, tgt: str) -> str:
        tmpl = CHAT_PROMPT if self.prompt_style == "chat" else COMPLETION_PROMPT
        return tmpl.format(src_name=language_name(src), tgt_name=language_name(tgt), text=text)

    def translate(self, texts: list[str], src: str, tgt: str, on_result: OnResult | None = None) -> list[Any]:
        prompts = [self.prompt(t, src, tgt) for t in texts]
        if self.prompt_style == "completion":
            gens = self.backend.generate_text(prompts, self.params)
        elif hasattr(self.backend, "generate_each"):  # openai_http: per-item results, as they arrive
            def done(i: int, res: Any) -> None:
                if on_result is not None:
                    on_result(i, res if isinstance(res, Exception) else _clean(res.text, tgt))

            gens = self.backend.generate_each([[{"role": "user", "content": p}] for p in prompts], self.params,
                                              on_result=done)
            return [g if isinstance(g, Exception) else _clean(g.text, tgt) for g in gens]
        else:
            gens = self.backend.generate([[{"role": "user", "content": p}] for p in prompts], self.params)
        out = [_clean(g.text, tgt) for g in gens]
        if on_result is not None:
            for i, t in enumerate(out):
                on_result(i, t)
        return out

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()


# --------------------------------------------------------------------------------------------
CONVENTIONS = ("marian", "nllb", "m2m100")


class Seq2SeqEngine:
    """A transformers encoder-decoder translation model with its family's language-code convention."""

    def __init__(self, model: str, *, convention: str, batch_size: int = 16, max_new_tokens: int = 512,
                 num_beams: int = 1, device: str | None = None, dtype: Any = None, loaded: tuple | None = None):
        if convention not in CONVENTIONS:
            raise ConfigError(f"convention must be one of {', '.join(CONVENTIONS)}", field="convention")
        self.name, self.model, self.convention = convention, model, convention
        self.batch_size, self.max_new_tokens, self.num_beams = batch_size, max_new_tokens, num_beams
        self.device, self.dtype = device, dtype
        self._models: dict[str, tuple[Any, Any]] = {}
        if loaded is not None:  # an already-loaded (model, tokenizer), e.g. in tests
            self._models[model] = loaded
        self.key = f"{convention}|{model}|beams={num_beams}|max_new_tokens={max_new_tokens}"

    def _load(self, src: str, tgt: str) -> tuple[Any, Any]:
        path = self.model.format(src=src, tgt=tgt)
        if path not in self._models:
            import torch
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            from polyinstruct.models.resolve import resolve_model_path

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            try:
                resolved = resolve_model_path(path, prepare=False)
                tok = AutoTokenizer.from_pretrained(resolved)
                mdl = AutoModelForSeq2SeqLM.from_pretrained(resolved, **({"dtype": self.dtype} if self.dtype else {}))
            except (OSError, ValueError) as e:
                raise PolyinstructError(f"cannot load translation model {path!r}: {e}") from None
            self._models[path] = (mdl.to(device).eval(), tok)
        return self._models[path]

    def _prepare(self, tok: Any, texts: list[str], src: str, tgt: str) -> tuple[list[str], dict[str, Any]]:
        gen: dict[str, Any] = {}
        if self.convention == "marian":
            vocab = tok.get_vocab()
            prefix = next((t for t in marian_tokens(tgt) if t in vocab), None)
            if prefix:
                texts = [f"{prefix} {t}" for t in texts]
        elif self.convention == "nllb":
            tok.src_lang = nllb_code(src)
            tgt_id = tok.convert_tokens_to_ids(nllb_code(tgt))
            if tgt_id is None or tgt_id == tok.unk_token_id:
                raise ConfigError(f"the tokenizer has no language token {nllb_code(tgt)!r}", field="to")
            gen["forced_bos_token_id"] = tgt_id
        else:  # m2m100
            tok.src_lang = m2m_code(src)
            try:
                gen["forced_bos_token_id"] = tok.get_lang_id(m2m_code(tgt))
            except (KeyError, AttributeError) as e:
                raise ConfigError(f"the tokenizer has no language id for {tgt!r} ({e})", field="to") from None
        return texts, gen

    def translate(self, texts: list[str], src: str, tgt: str, on_result: OnResult | None = None) -> list[Any]:
        import torch

        mdl, tok = self._load(src, tgt)
        inputs, gen = self._prepare(tok, texts, src, tgt)
        out: list[Any] = []
        with torch.inference_mode():
            for start in range(0, len(inputs), self.batch_size):
                batch = inputs[start:start + self.batch_size]
                enc = tok(batch, return_tensors="pt", padding=True, truncation=True).to(mdl.device)
                ids = mdl.generate(**enc, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                   do_sample=False, **gen)
                decoded = [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
                for j, t in enumerate(decoded):
                    out.append(t)
                    if on_result is not None:
                        on_result(start + j, t)
        return out

    def close(self) -> None:
        self._models.clear()


# --------------------------------------------------------------------------------------------
ENGINES: Registry[Callable[..., Engine]] = Registry("translation engine")


def _seq2seq(convention: str) -> Callable[..., Engine]:
    def make(model: str, *, batch_size: int = 16, max_new_tokens: int = 512, num_beams: int = 1,
             device: str | None = None, **unused: Any) -> Engine:
        _reject_unused(convention, unused)
        return Seq2SeqEngine(model, convention=convention, batch_size=batch_size, max_new_tokens=max_new_tokens,
                             num_beams=num_beams, device=device)
    return make


def _reject_unused(engine: str, unused: dict[str, Any]) -> None:
    given = {k: v for k, v in unused.items() if v not in (None, False, "")}
    if given:
        raise ConfigError(f"option(s) {', '.join(sorted(given))} do not apply to the {engine} engine", field="engine")


for _conv in CONVENTIONS:
    ENGINES.register(_conv, _seq2seq(_conv))


@ENGINES.register("hf")
def _hf(model: str, *, batch_size: int = 16, max_new_tokens: int = 512, prompt_style: str = "chat",
        template: str | None = None, device: str | None = None, **unused: Any) -> Engine:
    from polyinstruct.infer import load_backend

    _reject_unused("hf", unused)
    backend = load_backend({"backend": "hf", "model": model, "batch_size": batch_size, "template": template,
                            "device": device})
    return LLMEngine(backend, name="hf", model=model, prompt_style=prompt_style, max_new_tokens=max_new_tokens,
                     batch_size=batch_size)


@ENGINES.register("vllm")
def _vllm(model: str, *, batch_size: int = 256, max_new_tokens: int = 512, prompt_style: str = "chat",
          template: str | None = None, **unused: Any) -> Engine:
    from polyinstruct.infer import load_backend

    unused.pop("device", None)
    _reject_unused("vllm", unused)
    backend = load_backend({"backend": "vllm", "model": model, "template": template})
    return LLMEngine(backend, name="vllm", model=model, prompt_style=prompt_style, max_new_tokens=max_new_tokens,
                     batch_size=batch_size)


@ENGINES.register("openai")
def _openai(model: str, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
            concurrency: int = 8, batch_size: int | None = None, max_new_tokens: int = 1024, timeout: float = 120.0,
            max_retries: int = 6, backoff_base: float = 1.0, **unused: Any) -> Engine:
    try:
        from polyinstruct.infer.openai_http import OpenAIHTTPBackend
    except ModuleNotFoundError as e:  # httpx missing
        raise MissingDependencyError(f"the openai engine needs {e.name!r}: pip install {e.name}") from None

    unused.pop("device", None)
    _reject_unused("openai", unused)
    backend = OpenAIHTTPBackend(model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency,
                                timeout=timeout, max_retries=max_retries, backoff_base=backoff_base)
    return LLMEngine(backend, name="openai", model=model, prompt_style="chat", max_new_tokens=max_new_tokens,
                     batch_size=batch_size or concurrency * 4)


def load_engine(name: str, model: str, **options: Any) -> Engine:
    """Build a registered engine; unknown names fail with a did-you-mean."""
    if not model:
        raise ConfigError("--model is required (a path, packaged model name, hub id or API model name)",
                          field="model")
    return ENGINES.get(name)(model, **options)
