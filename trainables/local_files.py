"""Local-file helpers shared by the caches, trials and the analysis: a file's sha256, an exclusive lock file, and
writes that leave a file whole or untouched (a temporary name beside it, then a rename)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # not POSIX: no lock, but the caches' atomic renames still keep them consistent
    fcntl = None


def sha256_of(path: str | Path) -> str:
    """Return the sha256 hex digest of the file at `path`, read now (what checks a download)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _memoised_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def file_sha256(path: Path) -> str:
    """Return the sha256 hex digest of the file at `path`, memoised per path, size and mtime (a large model file
    is hashed once per process)."""
    st = path.stat()
    return _memoised_sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)


def _umask() -> int:
    """Return the process's umask, read from /proc (os.umask can only be read by setting it, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix) to write; when the block ends without an error it replaces
    `path` in one rename, else it is deleted: `path` is never left half-written (a full disk, a kill). The one whole
    write of the project: every local file it writes goes through here."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.lexists(tmp):
            # mkstemp makes it owner-only; the permissions a plain open() would give instead, so that other
            # accounts (a shared volume's other nodes) read what the umask lets them.
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_whole(path: str | Path, text: str) -> Path:
    """Return `path` after writing `text` there (UTF-8) whole or not at all."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_whole(path: str | Path, data: bytes) -> Path:
    """Return `path` after writing `data` there whole or not at all."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on the file `lock_path` (made if missing) for the duration of the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
