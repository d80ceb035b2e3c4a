"""Hugging Face transformers backend: base model, base + adapter (unmerged), or merged.

Batches are length-sorted and left-padded; generation uses the KV cache. Greedy text
is the same as one-prompt-at-a-time generation (tests/infer check this), because
``generate`` derives position ids from the attention mask and replies are cut at
the first end-of-sequence token and then at the first stop string, per row.
One lock serialises calls so threads (the server, chat) can share one backend.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from polyinstruct.errors import ConfigError, PolyinstructError
from polyinstruct.infer.backend import DecodingParams, Generation
from polyinstruct.infer.decoding import StopTrimmer, trim_at_stop, validate_decoding
from polyinstruct.infer.prompting import PromptFormat, resolve_prompt_format

log = logging.getLogger(__name__)


def _torch_dtype(dtype: Any, device: str):
    import torch

    if dtype is None:
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, str):
        if dtype == "auto":
            return "auto"
        aliases = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
        name = aliases.get(dtype, dtype)
        if not isinstance(getattr(torch, name, None), torch.dtype):
            raise ConfigError(f"unknown dtype {dtype!r}; use float32, bfloat16, float16 or auto", field="dtype")
        return getattr(torch, name)
    return dtype


def _mergeable(adapter_dir: str) -> bool:
    """True for adapters whose weights fold into the base (LoRA family, IA3), not prompt learning."""
    from polyinstruct.train.methods import mergeable_peft_types  # the method records say which merge

    try:
        cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return str(cfg.get("peft_type", "")).upper() in mergeable_peft_types()


def split_adapter(path: str, adapter: str | None) -> tuple[str, str | None]:
    """Return (base model path, adapter path or None) for a model/adapter/run-dir path, after the
    shared preflight (models.preflight: config, tokenizer config, adapter, safetensors headers)."""
    from polyinstruct.models.preflight import preflight

    pf = preflight(path, adapter)
    return pf.base, pf.adapter


class HFBackend:
    """``GenerationBackend`` over a transformers causal LM."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, prompt_format: PromptFormat, *, batch_size: int = 16,
                 model_name: str = "model"):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
        self.model, self.tokenizer, self.prompt_format = model, tokenizer, prompt_format
        self.batch_size, self.model_name = batch_size, model_name
        self._lock = threading.Lock()
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        if not eos_ids:
            raise ConfigError("the model has no eos token id (tokenizer and generation_config both lack one)")
        self.eos_ids = sorted(eos_ids)
        # Pad = eos is safe: padding is on the left, masked, and replies are cut at the first eos.
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    @classmethod
    def from_path(cls, path: str | Path, *, template: Any = None, device: str | None = None, dtype: Any = None,
                  adapter: str | None = None, merge: bool = False, batch_size: int = 16) -> HFBackend:
        """Load a model folder, hub id, run directory or adapter (its base is read from adapter_config.json)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from polyinstruct.models.preflight import check_fits_memory, preflight

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        pf = preflight(str(path), adapter)  # one error line naming file and field, before any loading
        base, adapter_dir = pf.base, pf.adapter
        tok_dir = adapter_dir if adapter_dir and (Path(adapter_dir) / "tokenizer_config.json").exists() else base
        want = _torch_dtype(dtype, device)
        # A LoRA-style adapter on a bf16/fp16 model: merge it in float32 first, then cast the merged
        # weights (the closest low-precision copy of the adapted model; an unmerged adapter would also
        # cast activations to float32 and back in every adapted layer, which made bf16 generation on
        # CPU slower than float32 in our measurements).
        low = isinstance(want, torch.dtype) and want in (torch.bfloat16, torch.float16)
        merge_first = bool(adapter_dir) and low and _mergeable(adapter_dir)
        if pf.config is not None:  # refuse from the config's sizes what cannot fit, before allocating
            check_fits_memory(pf.config, Path(base), dtype="float32" if merge_first else str(want),
                              device=device.split(",")[0])
        try:
            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
            model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32 if merge_first else want)
        except OSError as e:
            raise PolyinstructError(f"cannot load model from {base!r}: {e}") from None
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer))
        if adapter_dir:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter_dir)
            if merge or merge_first:
                model = model.merge_and_unload()
            if merge_first:
                # the merged weights into a model loaded in the target precision: transformers keeps
                # what must stay float32 there (rotary inv_freq buffers; casting them to bf16 made
                # generation 5x slower and positions coarser), which a blanket .to(dtype) would not
                merged = {k: v.to(want) if v.is_floating_point() else v for k, v in model.state_dict().items()}
                model = AutoModelForCausalLM.from_pretrained(base, dtype=want)
                if len(tokenizer) > model.get_input_embeddings().num_embeddings:
                    model.resize_token_embeddings(len(tokenizer))
                missing, unexpected = model.load_state_dict(merged, strict=False)
                if unexpected or [k for k in missing if not k.endswith("inv_freq")]:
                    raise PolyinstructError(f"merging {adapter_dir} into {base}: unexpected weights {unexpected[:3]}, "
                                            f"missing {missing[:3]}")
                del merged
            how = f"merged in float32, then cast to {str(want).removeprefix('torch.')}" if merge_first else (
                "merged" if merge else "unmerged")
            log.info("adapter %s on %s (%s)", adapter_dir, base, how)
        model.to(device).eval()
        fmt = resolve_prompt_format(path, tokenizer, template)
        name = Path(str(path)).name if Path(str(path)).exists() else str(path)
        return cls(model, tokenizer, fmt, batch_size=batch_size, model_name=name)

    # -- prompts -----------------------------------------------------------------------
    def render(self, messages: list[dict[str, str]]) -> str:
        """The exact prompt text the model sees for these messages."""
        return self.prompt_format.render(messages)

    def encode_messages(self, messages: list[dict[str, str]]) -> list[int]:
        """Prompt token ids, exactly as training encoded them when the template knows how."""
        if self.prompt_format.encode is not None:
            return self.prompt_format.encode(messages)
        return self._encode(self.render(messages))

    def _encode(self, prompt: str) -> list[int]:
        bos = self.tokenizer.bos_token
        add_special = not (bos and prompt.startswith(bos))  # the template already wrote BOS
        return self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"]

    @property
    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def _stops(self, params: DecodingParams) -> list[str]:
        return list(dict.fromkeys([*params.stop, *self.prompt_format.stop_strings]))

    def _gen_kwargs(self, params: DecodingParams, stops: list[str]) -> dict[str, Any]:
        from transformers import GenerationConfig

        validate_decoding(params)
        kw: dict[str, Any] = dict(max_new_tokens=params.max_new_tokens, do_sample=params.do_sample,
                                  pad_token_id=self.pad_id, eos_token_id=self.eos_ids, use_cache=True)
        if params.do_sample:
            kw.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or 0)
        if params.repetition_penalty != 1.0:
            kw["repetition_penalty"] = params.repetition_penalty
        if params.no_repeat_ngram_size:
            kw["no_repeat_ngram_size"] = params.no_repeat_ngram_size
        out: dict[str, Any] = {}
        if stops:
            kw["stop_strings"] = stops
            out["tokenizer"] = self.tokenizer
        out["generation_config"] = GenerationConfig(**kw)
        return out

    def _batch(self, seqs: list[list[int]]):
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
                mask[i, width - len(s):] = 1
        dev = self.model.device
        return ids.to(dev), mask.to(dev)

    def _finish(self, new_ids: list[int], prompt_len: int, params: DecodingParams, stops: list[str]) -> Generation:
        eos = set(self.eos_ids)
        n = next((i for i, t in enumerate(new_ids) if t in eos), len(new_ids))
        ended = n < len(new_ids)
        # Rows that finished early (stop string) are filled with pad; a pad the model
        # itself generated mid-reply is kept, as batch-1 ``generate`` would keep it.
        while n and new_ids[n - 1] == self.pad_id and self.pad_id not in eos:
            n -= 1
        text = self.tokenizer.decode(new_ids[:n], skip_special_tokens=True)
        text, hit = trim_at_stop(text, stops)
        finish = "length" if not (ended or hit) and n >= params.max_new_tokens else "stop"
        return Generation(text=text, prompt_tokens=prompt_len, completion_tokens=n, finish_reason=finish)

    # -- GenerationBackend -----------------------------------------------------------
    def generate(self, conversations: list[list[dict[str, str]]], params: DecodingParams, *,
                 should_stop: Callable[[], bool] | None = None) -> list[Generation]:
        """One reply per conversation, rendered with the model's template.

        ``should_stop`` (checked every token) ends generation early, e.g. when the
        server's client has gone; the replies so far are returned.
        """
        return self._generate_ids([self.encode_messages(c) for c in conversations], params, should_stop)

    def generate_text(self, prompts: list[str], params: DecodingParams, *,
                      should_stop: Callable[[], bool] | None = None) -> list[Generation]:
        """Continue raw prompt strings (no template); used by ``/v1/completions``."""
        return self._generate_ids([self._encode(p) for p in prompts], params, should_stop)

    def _generate_ids(self, encoded: list[list[int]], params: DecodingParams,
                      should_stop: Callable[[], bool] | None = None) -> list[Generation]:
        import torch

        if not encoded:
            return []
        stops = self._stops(params)
        kwargs = self._gen_kwargs(params, stops)
        if should_stop is not None:
            kwargs["stopping_criteria"] = stopping_criteria(should_stop)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        results: list[Generation | None] = [None] * len(encoded)
        with self._lock, torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                if should_stop is not None and should_stop():  # nobody waits for the rest
                    for i in idx:
                        results[i] = Generation(text="", prompt_tokens=len(encoded[i]), completion_tokens=0)
                    continue
                ids, mask = self._batch([encoded[i] for i in idx])
                out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
                new = out[:, ids.shape[1]:].tolist()
                for row, i in enumerate(idx):
                    results[i] = self._finish(new[row], len(encoded[i]), params, stops)
        return results  # type: ignore[return-value]

    def stream(self, conversation: list[dict[str, str]], params: DecodingParams, *,
               result: dict[str, Any] | None = None) -> Iterator[str]:
        """Yield reply text as produced; ``result`` (if given) receives the final ``Generation``."""
        return self._stream_ids(self.encode_messages(conversation), params, result)

    def stream_text(self, prompt: str, params: DecodingParams, *,
                    result: dict[str, Any] | None = None) -> Iterator[str]:
        """Stream the continuation of a raw prompt string (no template)."""
        return self._stream_ids(self._encode(prompt), params, result)

    def _stream_ids(self, encoded: list[int], params: DecodingParams,
                    result: dict[str, Any] | None) -> Iterator[str]:
        import torch
        from transformers import (
            StoppingCriteria,
            StoppingCriteriaList,
            TextIteratorStreamer,
        )

        stops = self._stops(params)
        kwargs = self._gen_kwargs(params, stops)
        cancel = threading.Event()

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        holder: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    ids, mask = self._batch([encoded])
                    holder["out"] = self.model.generate(
                        input_ids=ids, attention_mask=mask, streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Cancelled()]), **kwargs)
            except BaseException as e:  # surfaced to the consumer below
                holder["error"] = e
                streamer.end()

        trimmer = StopTrimmer(stops)
        with self._lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            try:
                for piece in streamer:
                    out = trimmer.feed(piece)
                    if out:
                        yield out
                    if trimmer.stopped:
                        break
                if not trimmer.stopped:
                    tail = trimmer.flush()
                    if tail:
                        yield tail
            finally:
                cancel.set()
                worker.join()
        if "error" in holder:
            raise PolyinstructError(f"generation failed: {holder['error']}") from holder["error"]
        if result is not None and "out" in holder:
            gen = self._finish(holder["out"][0, len(encoded):].tolist(), len(encoded), params, stops)
            if trimmer.stopped:
                gen.finish_reason = "stop"
            result["generation"] = gen


def stopping_criteria(should_stop: Callable[[], bool]) -> Any:
    """``generate``'s stopping criteria that end every row once ``should_stop()`` is true (a cancelled request)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Stop()])
