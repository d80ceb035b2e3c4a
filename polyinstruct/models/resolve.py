"""Turn what a user typed as a model into a loadable path or hub id.

Accepted: a local folder (a checkpoint, an adapter, or a polyinstruct run
directory), the name of a model polyinstruct can prepare from a registry
package (see ``polyinstruct.models.packaged``), or a hub id (works online only).
"""

from __future__ import annotations

import logging
import os
import socket
from functools import lru_cache
from pathlib import Path

from polyinstruct.config import cache_dir
from polyinstruct.errors import PolyinstructError

log = logging.getLogger(__name__)
HUB_HOST = "huggingface.co"


def default_cache_dir() -> Path:
    """The cache root; prepared checkpoints live in its ``models/`` ($POLYINSTRUCT_CACHE_DIR,
    default ~/.cache/polyinstruct; see polyinstruct.config.cache_dir)."""
    return cache_dir()


def resolve_model_path(name_or_path: str | os.PathLike, *, prepare: bool = True) -> str:
    """Return a path (or hub id) that ``from_pretrained`` can load.

    A polyinstruct run directory resolves to its ``model/`` or ``adapter/`` folder.
    """
    p = Path(name_or_path).expanduser()
    if p.exists():
        if (p / "model").is_dir() and (p / "model" / "config.json").exists():
            return str(p / "model")
        if (p / "adapter").is_dir() and (p / "adapter" / "adapter_config.json").exists():
            return str(p / "adapter")
        return str(p)
    name = str(name_or_path)
    from polyinstruct.models import packaged

    if name in packaged.PACKAGED_MODELS:
        target = packaged.prepared_path(name)
        if target.exists():
            return str(target)
        if not prepare:
            raise PolyinstructError(f"model {name!r} is not prepared yet: run `polyinstruct models prepare {name}`")
        return str(packaged.prepare(name))
    if "/" in name and not name.startswith((".", "/")):
        return hub_model(name)  # a hub id: as is online; cached copy or one clear error offline
    raise PolyinstructError(
        f"model {name!r} is neither an existing path, a packaged model name, nor a hub id (owner/name)"
    )


def _offline_env() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers a TCP connection, asked once per process (instead of
    transformers retrying every file for minutes on a machine without network)."""
    endpoint = os.environ.get("HF_ENDPOINT", f"https://{HUB_HOST}").split("://", 1)[-1].split("/", 1)[0]
    host, _, port = endpoint.partition(":")
    try:
        with socket.create_connection((host, int(port or 443)), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_snapshot(repo_id: str) -> str | None:
    """The local Hugging Face cache's folder of ``repo_id`` (with its config.json), if any."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    hit = try_to_load_from_cache(repo_id, "config.json")
    return str(Path(hit).parent) if isinstance(hit, str) else None


def hub_model(repo_id: str) -> str:
    """A hub id, checked once for network: online (or ``HF_HUB_OFFLINE=1``) it is returned as is;
    without network, its cached copy's folder, else one clear error at once."""
    if _offline_env() or hub_reachable():
        return repo_id
    cached = _cached_snapshot(repo_id)
    if cached:
        log.warning("%s cannot be reached: loading %s from the local Hugging Face cache (%s); set HF_HUB_OFFLINE=1 "
                    "to skip this check", HUB_HOST, repo_id, cached)
        return cached
    raise PolyinstructError(
        f"model {repo_id!r} is a Hugging Face Hub id, but {HUB_HOST} cannot be reached from here and the model is "
        f"not in the local Hugging Face cache. Download it where there is network (huggingface-cli download "
        f"{repo_id}) and copy the cache or the folder here, or use a local folder or a packaged model "
        f"(polyinstruct models list). Without network, set HF_HUB_OFFLINE=1.")
