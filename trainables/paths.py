"""Default locations: the shared data folder and the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

# The checkout's parent holds `shared/` (data, paper) beside the repository.
REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> str:
    """Return the data folder: $XLAMAML_DATA_DIR, else `../shared/data` beside the checkout."""
    env = os.environ.get("XLAMAML_DATA_DIR")
    if env:
        return str(Path(env).expanduser().resolve())
    return str((REPO_ROOT.parent / "shared" / "data").resolve())


def cache_dir() -> Path:
    """Return the xlamaml cache folder ($XLAMAML_CACHE, else $XDG_CACHE_HOME/xlamaml or ~/.cache/xlamaml)."""
    env = os.environ.get("XLAMAML_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "xlamaml"
