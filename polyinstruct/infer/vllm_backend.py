"""vLLM backend (optional extra ``polyinstruct[vllm]``, GPU only).

Same prompts as the HF backend (the same ``PromptFormat`` resolution) so HF and vLLM
outputs are comparable. vLLM has no ``no_repeat_ngram_size``; it is ignored with a
warning. Adapters are served unmerged through ``LoRARequest``. The offline ``LLM``
engine cannot stream, so ``stream`` yields the whole reply at once.

Not tested on the CPU CI machines (vLLM needs a GPU).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from polyinstruct.errors import MissingDependencyError
from polyinstruct.infer.backend import DecodingParams, Generation
from polyinstruct.infer.decoding import trim_at_stop, validate_decoding
from polyinstruct.infer.prompting import PromptFormat, resolve_prompt_format

log = logging.getLogger(__name__)


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise MissingDependencyError(
            "the vllm backend needs vLLM and a GPU: pip install 'polyinstruct[vllm]' (or use --backend hf)"
        ) from None
    return vllm


class VLLMBackend:
    """``GenerationBackend`` over ``vllm.LLM``."""

    name = "vllm"

    def __init__(self, llm: Any, prompt_format: PromptFormat, *, lora: Any = None, model_name: str = "model"):
        self.llm, self.prompt_format, self.lora, self.model_name = llm, prompt_format, lora, model_name

    @classmethod
    def from_path(cls, path: str | Path, *, template: Any = None, dtype: str = "auto", adapter: str | None = None,
                  tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                  max_model_len: int | None = None, **_ignored: Any) -> VLLMBackend:
        vllm = _import_vllm()
        from transformers import AutoTokenizer

        from polyinstruct.infer.hf import split_adapter

        base, adapter_dir = split_adapter(str(path), adapter)
        llm = vllm.LLM(model=base, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                       enable_lora=adapter_dir is not None,
                       tokenizer=adapter_dir if adapter_dir and (Path(adapter_dir) / "tokenizer_config.json").exists()
                       else base)
        lora = None
        if adapter_dir:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("adapter", 1, adapter_dir)
        tokenizer = AutoTokenizer.from_pretrained(adapter_dir or base) if adapter_dir else llm.get_tokenizer()
        fmt = resolve_prompt_format(path, tokenizer, template)
        return cls(llm, fmt, lora=lora, model_name=Path(str(path)).name)

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.prompt_format.render(messages)

    def _sampling(self, params: DecodingParams, stops: list[str]):
        vllm = _import_vllm()
        validate_decoding(params)
        if params.no_repeat_ngram_size:
            log.warning("vLLM has no no_repeat_ngram_size; ignoring %d", params.no_repeat_ngram_size)
        return vllm.SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature if params.do_sample else 0.0,
            top_p=params.top_p if params.do_sample else 1.0,
            top_k=(params.top_k or -1) if params.do_sample else -1,
            repetition_penalty=params.repetition_penalty,
            stop=stops or None,
            seed=params.seed,
        )

    def generate_text(self, prompts: list[str], params: DecodingParams) -> list[Generation]:
        stops = list(dict.fromkeys([*params.stop, *self.prompt_format.stop_strings]))
        outs = self.llm.generate(prompts, self._sampling(params, stops), lora_request=self.lora, use_tqdm=False)
        gens = []
        for o in outs:
            c = o.outputs[0]
            text, _ = trim_at_stop(c.text, stops)
            gens.append(Generation(text=text, prompt_tokens=len(o.prompt_token_ids or []),
                                   completion_tokens=len(c.token_ids),
                                   finish_reason="length" if c.finish_reason == "length" else "stop"))
        return gens

    def generate(self, conversations: list[list[dict[str, str]]], params: DecodingParams) -> list[Generation]:
        return self.generate_text([self.render(c) for c in conversations], params)

    def stream(self, conversation: list[dict[str, str]], params: DecodingParams, *,
               result: dict[str, Any] | None = None) -> Iterator[str]:
        gen = self.generate([conversation], params)[0]
        if result is not None:
            result["generation"] = gen
        yield gen.text
