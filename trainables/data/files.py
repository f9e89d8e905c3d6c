"""Local files of the readers: the folder or file a source names, and the cache key of a file."""

from __future__ import annotations

import os
from pathlib import Path

from xlamaml.trainables.data.errors import DataError
from xlamaml.trainables.paths import default_data_dir

ROOT_SOURCES = "a folder, a file, 'auto' or 'hub'"


def resolve_root(source: str, data_dir: str | None, name: str, expected: str = ROOT_SOURCES) -> Path:
    """Return the folder or file that a non-hub `source` names ('auto' is <data_dir>/<name>)."""
    if source == "auto":
        return Path(data_dir or default_data_dir()).expanduser() / name
    if not source:
        raise DataError(f"{name} source", "an empty string", expected)
    return Path(source).expanduser()


def file_key(path: Path) -> tuple[str, int, int]:
    """Return (resolved path, mtime in ns, size): the cache key that changes when the file does."""
    st = os.stat(path)
    return str(path.resolve()), st.st_mtime_ns, st.st_size
