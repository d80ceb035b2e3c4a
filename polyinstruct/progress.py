"""The one progress bar of polyinstruct (tqdm's, terminal or notebook), shown only when asked for."""

from __future__ import annotations

from typing import Any


def progress_bar(total: int, *, desc: str, unit: str = "it", initial: int = 0) -> Any:
    """A ``tqdm`` bar (``update``, ``set_postfix``, ``close``) sized to the terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
