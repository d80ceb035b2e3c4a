"""``polyinstruct predict``, ``chat`` and ``serve``: parse arguments, call one function each."""

from __future__ import annotations

import argparse
import os
from typing import Any

from polyinstruct.infer.backend import DECODING_PRESETS


def _model_args(p: argparse.ArgumentParser, *, batch_default: int = 16) -> None:
    p.add_argument("model", help="model folder, run directory, adapter folder, packaged model or hub id "
                                 "(for --backend openai_http: the remote model name)")
    p.add_argument("--backend", default="hf", help="hf (default), vllm or openai_http")
    p.add_argument("--template", help="chat template name or template.yaml (default: the run's template.yaml, "
                                      "else the tokenizer's chat template, else tulu)")
    p.add_argument("--adapter", help="PEFT adapter folder to apply to MODEL")
    p.add_argument("--merge", action="store_true", help="merge the adapter into the weights after loading")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", help="float32, bfloat16, float16 or auto (default: bf16 on GPU, fp32 on CPU)")
    p.add_argument("--batch-size", type=int, default=batch_default)
    p.add_argument("--base-url", help="openai_http: the endpoint, e.g. http://127.0.0.1:8000/v1")


def _decoding_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoding", default="greedy", choices=sorted(DECODING_PRESETS),
                   help="preset (greedy, alpaca_cot, tulu_eval); the flags below override it")
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--repetition-penalty", type=float)
    p.add_argument("--no-repeat-ngram-size", type=int)
    p.add_argument("--sample", dest="do_sample", action="store_true", default=None, help="sample (not greedy)")
    p.add_argument("--stop", action="append", help="stop string (repeatable)")
    p.add_argument("--seed", type=int)


def _backend_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if args.backend == "openai_http":
        return {"base_url": args.base_url} if args.base_url else {}
    kw = {"template": args.template, "adapter": args.adapter, "dtype": args.dtype}
    if args.backend == "hf":
        kw.update(device=args.device, merge=args.merge, batch_size=args.batch_size)
    return {k: v for k, v in kw.items() if v not in (None, False)}


def _params(args: argparse.Namespace):
    from polyinstruct.infer.decoding import resolve_decoding

    return resolve_decoding(args.decoding, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty,
                            no_repeat_ngram_size=args.no_repeat_ngram_size, do_sample=args.do_sample,
                            stop=args.stop, seed=args.seed)


def _load(args: argparse.Namespace):
    from polyinstruct.infer import load_backend

    return load_backend({"backend": args.backend, "model": args.model, **_backend_kwargs(args)})


def _run_predict(args: argparse.Namespace) -> int:
    from polyinstruct.infer.predict import predict

    # the model by name: predict reads and checks the data first, then loads it (a data error costs no load)
    out = predict(args.data, args.model, args.out, backend=args.backend, backend_kwargs=_backend_kwargs(args),
                  decoding=_params(args), batch_size=args.batch_size, limit=args.limit, chunk_size=args.chunk_size,
                  progress=not args.no_progress, data_format=args.format, model_name=args.model_name or args.model)
    print(out)
    return 0


def _run_chat(args: argparse.Namespace) -> int:
    from polyinstruct.infer.chat import chat

    chat(_load(args), _params(args), system=args.system)
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from polyinstruct.infer.serve import serve

    from polyinstruct.errors import ConfigError
    from polyinstruct.infer.serve import check_limits

    api_key = args.api_key
    if api_key is None and args.api_key_env:  # named on purpose: unset or empty is an error, not an open server
        api_key = os.environ.get(args.api_key_env) or None
        if api_key is None:
            raise ConfigError(f"the environment variable {args.api_key_env} is not set (or empty); set it to the key "
                              "clients must send, or drop --api-key-env to serve without a key", field="--api-key-env")
    elif api_key is None:
        api_key = os.environ.get("POLYINSTRUCT_API_KEY") or None
    check_limits(max_prompts_per_request=args.max_prompts_per_request, max_queued_tokens=args.max_queued_tokens,
                 max_queue=args.max_queue, max_tokens_limit=args.max_tokens_limit,
                 max_request_bytes=args.max_request_bytes)
    if args.threads is not None:
        from polyinstruct.infer.serve import set_threads

        set_threads(args.threads)  # before loading: the model's first forward uses them
    backend = _load(args)
    serve(backend, host=args.host, port=args.port, model_name=args.model_name or getattr(backend, "model_name", None),
          api_key=api_key, max_tokens_limit=args.max_tokens_limit, batch_size=args.batch_size,
          max_request_bytes=args.max_request_bytes, max_prompts_per_request=args.max_prompts_per_request,
          max_queued_tokens=args.max_queued_tokens, max_queue=args.max_queue, add_bos=args.add_bos)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("predict", help="generate responses for every record of a dataset (resumable JSONL)")
    _model_args(p)
    _decoding_args(p)
    p.add_argument("--data", required=True, help="dataset file or folder (any format polyinstruct reads)")
    p.add_argument("--format", help="dataset format (default: detected)")
    p.add_argument("--out", required=True, help="predictions JSONL; rerunning skips ids already in it")
    p.add_argument("--limit", type=int, help="only the first N records")
    p.add_argument("--chunk-size", type=int, help="rows generated between appends to --out (default 4 x batch size)")
    p.add_argument("--model-name", help="name written in each row's 'model' field (default: MODEL)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_predict)

    p = subparsers.add_parser("chat", help="interactive chat in the terminal (streaming, /reset, /system)")
    _model_args(p, batch_default=1)
    _decoding_args(p)
    p.add_argument("--system", help="system prompt")
    p.set_defaults(func=_run_chat)

    p = subparsers.add_parser("serve", help="OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions)")
    _model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model-name", help="name clients pass as 'model' (default: the model folder's name)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (prefer --api-key-env)")
    p.add_argument("--api-key-env", metavar="VAR",
                   help="environment variable holding the key; an error when VAR is unset (default: use "
                        "$POLYINSTRUCT_API_KEY when set, else no key)")
    p.add_argument("--max-tokens-limit", type=int, default=2048, help="largest max_tokens a request may ask for")
    p.add_argument("--max-request-bytes", type=int, default=1_000_000)
    p.add_argument("--max-prompts-per-request", type=int, default=32,
                   help="prompts one /v1/completions request may carry (default 32)")
    p.add_argument("--max-queued-tokens", type=int, default=131_072,
                   help="prompt + max_tokens summed over all admitted, unfinished prompts; a request above it is "
                        "a 400, one that does not fit now a 503 (default 131072)")
    p.add_argument("--max-queue", type=int, default=256, help="prompts waiting for the model (default 256)")
    p.add_argument("--threads", type=int, help="CPU threads for the model (default: torch's, all cores)")
    p.add_argument("--add-bos", choices=("auto", "never"), default="auto",
                   help="token-id prompts lacking BOS get it first when the model's tokenizer adds BOS to text "
                        "(auto, the default; lm-eval's local-completions sends ids without it), or are used "
                        "exactly as sent (never, as vLLM does)")
    p.set_defaults(func=_run_serve)
