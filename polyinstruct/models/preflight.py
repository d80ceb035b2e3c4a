"""Check a model folder before anything is loaded from it (docs/inference.md, "Model folders").

Every command that loads a model for inference (``predict``, ``serve``, ``eval``, the
browser chat, ``merge``, judges) goes through ``preflight`` first. It reads only small
JSON files and the safetensors headers, and refuses, with one ``error:`` line naming the
file and the field:

- ``config.json`` that is not a JSON object, whose ``model_type`` transformers does not
  know (with ``auto_map``: the folder wants its own Python code, which polyinstruct never
  runs), or whose sizes are not positive whole numbers;
- ``tokenizer_config.json`` whose ``auto_map`` names code for a tokenizer class
  transformers does not have;
- an adapter whose ``peft_type`` peft does not know, or whose ``base_model_name_or_path``
  is not a model folder (``/etc``, ``../..``) or is itself a refused folder;
- a ``*.safetensors`` file that is empty, truncated, has a header length past the file, a
  header that is not JSON, or tensors whose offsets or sizes do not fit the file;
- a model whose memory, estimated from ``config.json`` (``estimate_bytes``), is more than
  what the device has free: the figure and what is available, before any allocation.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyinstruct.errors import ConfigError

MAX_HEADER_BYTES = 100 * 2**20  # the safetensors format's own limit on the JSON header
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "intermediate_size", "vocab_size", "max_position_embeddings", "head_dim")
_TORCH_BYTES = {"float32": 4, "float": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2,
                "float64": 8}


@dataclass
class Preflight:
    """What ``preflight`` found: the base model to load and the adapter on it, if any."""

    base: str
    adapter: str | None
    config: dict[str, Any] | None  # the base's config.json (None for a hub id not on disk)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read: {e}", file=str(path)) from None
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"not valid JSON: {e}", file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("must be a JSON object", file=str(path))
    return data


def check_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a model folder: a known ``model_type`` and sane sizes."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    path = folder / "config.json"
    cfg = _read_json(path)
    model_type = cfg.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        if "auto_map" in cfg:
            raise ConfigError(f"this model needs its own Python code (model_type {str(model_type)[:40]!r} is not one "
                              "transformers knows); polyinstruct never runs code from a model folder",
                              file=str(path), field="auto_map")
        raise ConfigError(f"{str(model_type)[:40]!r} is not a model type transformers knows", file=str(path),
                          field="model_type")
    for scope, sub in (("", cfg), ("text_config.", cfg.get("text_config"))):
        if not isinstance(sub, dict):
            continue
        for key in _SIZE_FIELDS:
            v = sub.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"must be a positive whole number, got {str(v)[:40]!r}", file=str(path),
                                  field=scope + key)
    return cfg


def check_tokenizer_config(folder: Path) -> None:
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return
    cfg = _read_json(path)
    if "auto_map" not in cfg:
        return
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    cls = cfg.get("tokenizer_class")
    if not isinstance(cls, str) or tokenizer_class_from_name(cls) is None:
        raise ConfigError(f"this tokenizer needs its own Python code (tokenizer_class {str(cls)[:40]!r} is not one "
                          "transformers has); polyinstruct never runs code from a model folder",
                          file=str(path), field="auto_map")


def check_safetensors(path: Path) -> None:
    """The header of one ``.safetensors`` file: its length, its JSON and every tensor's offsets."""
    size = path.stat().st_size
    if size < 8:
        raise ConfigError(f"{'empty' if size == 0 else 'truncated'} file ({size} bytes): not a safetensors file",
                          file=str(path), field="header")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise ConfigError(f"header length {n} does not fit the file ({size} bytes)", file=str(path),
                              field="header")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ConfigError("the header is not JSON (a corrupted or foreign file)", file=str(path),
                          field="header") from None
    if not isinstance(header, dict):
        raise ConfigError("the header is not a JSON object", file=str(path), field="header")
    data_bytes = size - 8 - n
    for name, t in header.items():
        if name == "__metadata__":
            continue
        ok = isinstance(t, dict) and t.get("dtype") in _DTYPE_BYTES and isinstance(t.get("shape"), list) and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in t["shape"])
        offs = t.get("data_offsets") if isinstance(t, dict) else None
        if not ok or not (isinstance(offs, list) and len(offs) == 2
                          and all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            raise ConfigError("needs dtype, shape and two data_offsets", file=str(path), field=f"header.{name}")
        begin, end = offs
        if not 0 <= begin <= end <= data_bytes:
            raise ConfigError(f"data_offsets [{begin}, {end}] are outside the file's {data_bytes} data bytes "
                              "(truncated or corrupted)", file=str(path), field=f"header.{name}")
        if end - begin != math.prod(t["shape"]) * _DTYPE_BYTES[t["dtype"]]:
            raise ConfigError(f"{end - begin} bytes do not hold a {t['dtype']} tensor of shape {t['shape']}",
                              file=str(path), field=f"header.{name}")


def check_weights(folder: Path) -> None:
    for p in sorted(folder.glob("*.safetensors")):
        check_safetensors(p)


def check_adapter(folder: Path) -> dict[str, Any]:
    path = folder / "adapter_config.json"
    cfg = _read_json(path)
    from peft import PeftType

    kind = cfg.get("peft_type")
    if not isinstance(kind, str) or kind.upper() not in PeftType.__members__:
        raise ConfigError(f"{str(kind)[:40]!r} is not an adapter type peft knows", file=str(path), field="peft_type")
    base = cfg.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        raise ConfigError("missing or not a string", file=str(path), field="base_model_name_or_path")
    return cfg


def _model_folder(target: str, *, named_in: str | None = None) -> Path | None:
    """A local model folder (must hold config.json), or None for a packaged model / hub id."""
    from polyinstruct.models.resolve import resolve_model_path

    where = {"file": named_in, "field": "base_model_name_or_path"} if named_in else {}
    try:
        resolved = resolve_model_path(target)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - resolve raises PolyinstructError with its own message
        if named_in:
            raise ConfigError(str(e), **where) from None
        raise
    p = Path(resolved)
    if not p.exists():
        return None  # a hub id: transformers says clearly when it cannot be fetched
    if not p.is_dir() or not (p / "config.json").is_file():
        raise ConfigError(f"{target} is not a model folder (no config.json in {p})", **where)
    return p


def estimate_bytes(cfg: dict[str, Any], dtype: str | None = None) -> tuple[int, int]:
    """(parameters, bytes) a causal LM of this config needs once loaded, from its config alone."""
    c = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    h = int(c.get("hidden_size") or c.get("n_embd") or c.get("d_model") or 0)
    n_layers = int(c.get("num_hidden_layers") or c.get("n_layer") or c.get("num_layers") or 0)
    vocab = int(c.get("vocab_size") or 0)
    heads = int(c.get("num_attention_heads") or c.get("n_head") or 1)
    kv = int(c.get("num_key_value_heads") or heads)
    head_dim = int(c.get("head_dim") or (h // heads if heads else h) or 1)
    inter = int(c.get("intermediate_size") or c.get("n_inner") or 4 * h)
    experts = int(c.get("num_local_experts") or c.get("num_experts") or 1)
    attn = h * heads * head_dim * 2 + 2 * h * kv * head_dim
    mlp = 3 * h * inter * max(1, experts)
    emb = vocab * h * (1 if c.get("tie_word_embeddings", cfg.get("tie_word_embeddings", True)) else 2)
    params = emb + n_layers * (attn + mlp + 2 * h) + h
    name = str(dtype or "float32").removeprefix("torch.")
    if name == "auto":
        name = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32")
    return params, params * _TORCH_BYTES.get(name, 4)


def available_bytes(device: str) -> int:
    """Free memory on ``device`` (``cpu``: psutil's available; ``cuda[:i]``: the GPU's free memory)."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
            return int(torch.cuda.mem_get_info(index)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def check_fits_memory(cfg: dict[str, Any], folder: Path, *, dtype: str | None, device: str,
                      available: int | None = None) -> None:
    params, need = estimate_bytes(cfg, dtype)
    have = available_bytes(device) if available is None else available
    if need > have:
        raise ConfigError(f"this model needs about {_human(need)} of memory in {str(dtype or 'float32')} "
                          f"({params:.3g} parameters, estimated from its sizes); {_human(have)} is available "
                          f"on {device}", file=str(folder / "config.json"), field="hidden_size")


def check_model_folder(folder: Path) -> dict[str, Any]:
    cfg = check_config(folder)
    check_tokenizer_config(folder)
    check_weights(folder)
    return cfg


def preflight(path: str | os.PathLike, adapter: str | None = None, *, dtype: str | None = None,
              device: str | None = None) -> Preflight:
    """Check what ``path`` (a model folder, run dir, adapter, packaged name or hub id) and
    ``adapter`` name before loading; ``device`` given: also check the memory estimate."""
    from polyinstruct.models.resolve import resolve_model_path

    resolved = Path(resolve_model_path(path))
    adapter_dir: Path | None = None
    if (resolved / "adapter_config.json").is_file():
        if adapter is not None:
            raise ConfigError(f"{path} is already an adapter; do not pass adapter= as well", field="adapter")
        adapter_dir = resolved
        base_name = str(check_adapter(adapter_dir)["base_model_name_or_path"])
        base = _model_folder(base_name, named_in=str(adapter_dir / "adapter_config.json"))
        base_str = str(base) if base is not None else resolve_model_path(base_name)
    else:
        base = _model_folder(str(path))
        base_str = str(base) if base is not None else str(resolved)
        if adapter is not None:
            adapter_dir = Path(resolve_model_path(adapter))
            if not (adapter_dir / "adapter_config.json").is_file():
                raise ConfigError(f"{adapter} is not an adapter folder (no adapter_config.json)", field="adapter")
            check_adapter(adapter_dir)
    cfg = check_model_folder(base) if base is not None else None
    if adapter_dir is not None:
        check_tokenizer_config(adapter_dir)
        check_weights(adapter_dir)
    if cfg is not None and device is not None:
        check_fits_memory(cfg, base, dtype=dtype, device=device)
    return Preflight(base_str, str(adapter_dir) if adapter_dir else None, cfg)
