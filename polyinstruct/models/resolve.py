"""Turn what a user typed as a model into a loadable path or hub id.

Accepted: a local folder (a checkpoint, an adapter, or a polyinstruct run
directory), the name of a model polyinstruct can prepare from a registry
package (see ``polyinstruct.models.packaged``), or a hub id (works online only).
"""

from __future__ import annotations

import os
from pathlib import Path

from polyinstruct.config import cache_dir
from polyinstruct.errors import PolyinstructError

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
        return name  # a hub id; loading fails clearly when offline
    raise PolyinstructError(
        f"model {name!r} is neither an existing path, a packaged model name, nor a hub id (owner/name)"
    )
