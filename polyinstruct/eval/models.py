"""The model under evaluation as an lm-eval ``LM``, prompted with the run's own chat template.

Backends (``EVAL_BACKENDS``):

- ``hf``: polyinstruct's loader (``HFBackend.from_path``: hub id, local folder, run dir,
  run dir with a PEFT adapter, which is merged into its base for speed) wrapped in lm-eval's
  ``HFLM``. ``apply_chat_template`` renders with polyinstruct's prompt format, so a run is
  evaluated in the template it was trained with (``template.yaml`` of the run dir), an
  instruct model in its tokenizer's template (docs/inference.md, "prompt template").
- ``vllm``: lm-eval's ``VLLM`` on the same resolved paths (adapter via ``lora_local_path``);
  GPU only, ``pip install 'polyinstruct[vllm]'``.
- ``openai``: lm-eval's ``local-completions`` client against any OpenAI-compatible
  ``/v1/completions`` endpoint (``polyinstruct serve`` included); the server applies no
  template to completions, so chat-style prompts are rendered here with the model's template
  when ``--template`` names one. Token ids go out with BOS first exactly when the model's
  tokenizer adds BOS to text (Gemma, Llama; read from the local tokenizer or the server's
  ``/tokenize``), as the ``hf`` backend scores them; lm-eval's own default sends none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from polyinstruct.errors import ConfigError, MissingDependencyError
from polyinstruct.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    lm: Any                      # an lm_eval.api.model.LM
    name: str
    template: str                # prompt format name ("" when none)
    template_source: str         # explicit | run_dir | tokenizer | default | none
    chat: bool                   # whether prompts go through the template (--chat auto|on|off)
    info: dict[str, Any]


EVAL_BACKENDS: Registry[Callable[..., LoadedModel]] = Registry("eval backend")


def _chat_choice(chat: str | bool, source: str) -> bool:
    if isinstance(chat, bool):
        return chat
    if chat == "auto":
        # A run's template or an instruct tokenizer's template: the model was trained on it.
        return source in ("explicit", "run_dir", "tokenizer")
    if chat in ("on", "true", "yes"):
        return True
    if chat in ("off", "false", "no"):
        return False
    raise ConfigError(f"chat must be auto, on or off, got {chat!r}", field="--chat")


def render_chat(fmt: Any, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """lm-eval's chat rendering through a polyinstruct prompt format. Without a generation
    prompt, lm-eval asks to continue a final assistant message (an answer prefix): the prompt
    up to the assistant turn, then that text."""
    if not add_generation_prompt and chat_history and chat_history[-1].get("role") == "assistant":
        return fmt.render(chat_history[:-1]) + chat_history[-1].get("content", "")
    return fmt.render(chat_history)


def _hflm_class():
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError as e:
        from polyinstruct.eval.tasks import INSTALL_HINT

        raise MissingDependencyError(f"polyinstruct eval needs lm-eval: {INSTALL_HINT} ({e})") from None

    class PolyHFLM(HFLM):
        """HFLM whose chat rendering is polyinstruct's prompt format."""

        prompt_format = None

        def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
            if self.prompt_format is None:
                return super().apply_chat_template(chat_history, add_generation_prompt)
            return render_chat(self.prompt_format, chat_history, add_generation_prompt)

        def chat_template(self, chat_template=False):
            return self.prompt_format.name if self.prompt_format is not None else super().chat_template(chat_template)

    return PolyHFLM


@EVAL_BACKENDS.register("hf")
def load_hf(model: str, *, template: str | None = None, chat: str | bool = "auto", batch_size: int = 8,
            device: str | None = None, dtype: str | None = None, max_length: int | None = None,
            **_: Any) -> LoadedModel:
    from polyinstruct.infer.hf import HFBackend

    backend = HFBackend.from_path(model, template=template, device=device, dtype=dtype, merge=True,
                                  batch_size=batch_size)
    fmt = backend.prompt_format
    cls = _hflm_class()
    ctx = max_length or backend.context_length or 2048
    lm = cls(pretrained=backend.model, tokenizer=backend.tokenizer, batch_size=batch_size, max_length=ctx)
    lm.prompt_format = fmt
    use_chat = _chat_choice(chat, fmt.source)
    return LoadedModel(lm=lm, name=backend.model_name, template=fmt.name, template_source=fmt.source,
                       chat=use_chat, info={"backend": "hf", "device": str(backend.model.device),
                                            "max_length": ctx})


@EVAL_BACKENDS.register("vllm")
def load_vllm(model: str, *, template: str | None = None, chat: str | bool = "auto", batch_size: int = 8,
              dtype: str | None = None, max_length: int | None = None, **_: Any) -> LoadedModel:
    try:
        from lm_eval.models.vllm_causallms import VLLM
        import vllm  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(f"--backend vllm needs vLLM on a GPU: pip install 'polyinstruct[vllm]' ({e})") \
            from None
    from transformers import AutoTokenizer

    from polyinstruct.infer.hf import split_adapter
    from polyinstruct.infer.prompting import resolve_prompt_format

    base, adapter = split_adapter(str(model), None)
    tok = AutoTokenizer.from_pretrained(adapter or base)
    fmt = resolve_prompt_format(model, tok, template)

    class PolyVLLM(VLLM):
        def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
            return render_chat(fmt, chat_history, add_generation_prompt)

    kw: dict[str, Any] = {"pretrained": base, "batch_size": batch_size, "dtype": dtype or "auto"}
    if adapter:
        kw.update(enable_lora=True, lora_local_path=adapter)
    if max_length:
        kw["max_length"] = max_length
    lm = PolyVLLM(**kw)
    return LoadedModel(lm=lm, name=str(model), template=fmt.name, template_source=fmt.source,
                       chat=_chat_choice(chat, fmt.source), info={"backend": "vllm", "adapter": adapter})


@EVAL_BACKENDS.register("openai")
def load_openai(model: str, *, base_url: str | None = None, template: str | None = None,
                chat: str | bool = "auto", batch_size: int = 8, tokenizer: str | None = None,
                max_length: int | None = None, **_: Any) -> LoadedModel:
    if not base_url:
        raise ConfigError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1/completions)",
                          field="--base-url")
    try:
        from lm_eval.models.openai_completions import LocalCompletionsAPI
    except ImportError as e:
        raise MissingDependencyError(f"--backend openai needs lm-eval[api]: pip install 'polyinstruct[eval]' ({e})") \
            from None
    fmt = None
    if template is not None:
        from polyinstruct.infer.prompting import resolve_prompt_format

        fmt = resolve_prompt_format(None, None, template)

    kw: dict[str, Any] = {"base_url": base_url, "model": model, "batch_size": batch_size}
    bos_id: int | None = None
    if tokenizer:  # a local tokenizer: token-id prompts, likelihood tasks work
        from transformers import AutoTokenizer

        from polyinstruct.templates.tokenize import tokenizer_adds_bos

        kw.update(tokenizer_backend="huggingface", tokenizer=tokenizer)
        kw["add_bos_token"] = tokenizer_adds_bos(AutoTokenizer.from_pretrained(tokenizer))
    else:
        from lm_eval.utils import check_remote_tokenizer_support

        if check_remote_tokenizer_support(base_url):  # the server's tokenizer endpoints
            kw["tokenizer_backend"] = "remote"
            bos_id = remote_bos_id(base_url)
        else:  # text prompts: generation tasks only (the server tokenizes them, BOS included)
            kw.update(tokenizer_backend=None, tokenized_requests=False)
    if max_length:
        kw["max_length"] = max_length

    class PolyCompletions(LocalCompletionsAPI):
        def apply_chat_template(self, chat_history, add_generation_prompt: bool = True):
            if fmt is None:
                raise ConfigError("chat prompts over --backend openai need --template (the server does not "
                                  "render templates for /v1/completions)", field="--template")
            return render_chat(fmt, chat_history, add_generation_prompt)

        def tok_encode(self, string, *args, **kwargs):
            # lm-eval's remote tokenizer never adds BOS; put it first as the model's tokenizer does
            enc = super().tok_encode(string, *args, **kwargs)
            if bos_id is None:
                return enc
            fix = lambda e: e if e and e[0] == bos_id else [bos_id, *e]  # noqa: E731
            return fix(enc) if isinstance(string, str) else [fix(e) for e in enc]

    lm = PolyCompletions(**kw)
    source = "explicit" if fmt is not None else "none"
    return LoadedModel(lm=lm, name=model, template=fmt.name if fmt else "", template_source=source,
                       chat=_chat_choice(chat, source), info={"backend": "openai", "base_url": base_url})


def remote_bos_id(base_url: str, timeout: float = 30) -> int | None:
    """The BOS id when the server's tokenizer adds BOS to text (vLLM's and polyinstruct's
    ``/tokenize`` with ``add_special_tokens``), else None."""
    import requests

    root = base_url.replace("/v1/completions", "").replace("/v1/chat/completions", "").rstrip("/")
    try:
        with_special = requests.post(f"{root}/tokenize", json={"prompt": "a", "add_special_tokens": True},
                                     timeout=timeout).json().get("tokens") or []
        without = requests.post(f"{root}/tokenize", json={"prompt": "a", "add_special_tokens": False},
                                timeout=timeout).json().get("tokens") or []
    except (requests.RequestException, ValueError) as e:
        log.warning("could not ask %s/tokenize whether the model wants BOS (%s); sending ids as tokenized", root, e)
        return None
    if len(with_special) == len(without) + 1 and with_special[1:] == without:
        return int(with_special[0])
    return None


def load_model(model: str, backend: str = "hf", **kw: Any) -> LoadedModel:
    return EVAL_BACKENDS.get(backend)(model, **kw)
