"""Experiment storage: a local folder or a URI (`s3://`, `gs://`, ...), reached through `pyarrow.fs`.

`pyarrow.fs` is the file-system layer Ray Tune itself uses for `storage_path`, so whatever a sweep's storage is,
the driver, the trials and `xlamaml analyze` read and write it the same way. Locations are strings: a URI stays
as it is, a local path is made absolute (every trial changes its working directory). Errors are one line that
names the location (`StorageError`).
"""

from __future__ import annotations

import errno
import functools
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.fs as pafs

from xlamaml.trainables.errors import XlamamlError
from xlamaml.trainables.local_files import replacing

BUCKET_SCHEMES = ("s3", "gs", "gcs")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class StorageError(XlamamlError, OSError):
    """A storage location that cannot be reached, read or written; the message names it."""


class StorageFullError(StorageError):
    """No room left (ENOSPC, a quota) on the storage or a node's cache; the message names the path and what next."""


def is_uri(location: str | Path) -> bool:
    """Return True when `location` is a URI with a scheme (`s3://...`), not a local path."""
    return bool(_SCHEME.match(str(location)))


def normalize(location: str | Path) -> str:
    """Return `location` as a URI unchanged, or as an absolute local path."""
    text = str(location)
    return text.rstrip("/") if is_uri(text) else str(Path(text).expanduser().resolve())


PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def check_name(name: str, what: str = "--name") -> str:
    """Return `name` when it is a plain experiment name (one path component: letters, digits, '.', '_', '-', not
    starting with '.'); else raise StorageError saying what was expected (nothing may be written outside the
    storage the user named)."""
    if not isinstance(name, str) or not PLAIN_NAME.match(name) or len(name) > 200:
        raise StorageError(f"{what} {name!r}: expected a plain name (letters, digits, '.', '_' and '-', at most 200, "
                           f"not starting with '.'), not a path: the experiment goes under --storage")
    return name


def join(location: str, *parts: str) -> str:
    """Return `location` with `parts` appended (a URI with '/', a local path with the OS separator)."""
    if is_uri(location):
        return "/".join([location.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(location, *parts))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """Return (the pyarrow file system of `location`, the path inside it); raise StorageError if none fits."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), normalize(location)
    scheme, _, rest = location.partition("://")
    try:
        if scheme in BUCKET_SCHEMES:  # the path inside a bucket store is "bucket/key", as pyarrow gives it
            # Keyed by the endpoint too: a process that points AWS_ENDPOINT_URL elsewhere gets a new file system.
            endpoint = (os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("AWS_ENDPOINT_URL_S3"))
            return _filesystem_of(f"{scheme}://{rest.split('/', 1)[0]}", endpoint), rest.rstrip("/")
        return pafs.FileSystem.from_uri(location)
    except pa.ArrowInvalid as e:  # an unknown scheme or a malformed URI
        raise StorageError(f"{location}: not a storage location pyarrow can open ({_one_line(e)}); expected a "
                           f"local folder or a URI such as s3://bucket/prefix or gs://bucket/prefix") from None
    except (OSError, ValueError) as e:  # no network, no credentials, a region that cannot be looked up
        raise StorageError(f"{location}: cannot reach the storage ({_one_line(e)})") from None


@functools.lru_cache(maxsize=16)
def _filesystem_of(root: str, endpoint: tuple[str | None, str | None]) -> pafs.FileSystem:
    """Return the file system of a bucket URI, made once per process and endpoint (an S3 one looks up its region
    first)."""
    return pafs.FileSystem.from_uri(root)[0]


def _guard(location: str, what: str, call: Callable):
    """Return `call()`, turning the file system's errors into one StorageError line naming `location`."""
    try:
        return call()
    except StorageError:
        raise
    except (OSError, ValueError) as e:
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(e):
            raise StorageFullError(f"{location}: cannot {what}, no space left on the device ({_one_line(e)}); free "
                                   f"space, then run again (a sweep: `xlamaml sweep --resume --name NAME`)") from None
        raise StorageError(f"{location}: cannot {what} ({_one_line(e)})") from None


def exists(location: str) -> bool:
    """Return True when a file or folder is at `location`."""
    fs, path = filesystem(location)
    info = _guard(location, "look up", lambda: fs.get_file_info(path))
    return info.type != pafs.FileType.NotFound


def read_bytes(location: str) -> bytes:
    """Return the bytes of the file at `location`."""
    fs, path = filesystem(location)

    def read() -> bytes:
        with fs.open_input_stream(path) as f:
            return f.read()
    return _guard(location, "read", read)


def _write_local(path: str, fill: Callable[[str], None]) -> None:
    """Have `fill` write a temporary file beside `path`, then rename it to `path` (whole or not at all)."""
    with replacing(path) as tmp:
        fill(str(tmp))


def write_bytes(location: str, data: bytes) -> None:
    """Write `data` to `location` whole or not at all (local: a temporary name, then rename; object stores: one put)."""
    fs, path = filesystem(location)
    if isinstance(fs, pafs.LocalFileSystem):
        _guard(location, "write", lambda: _write_local(path, lambda tmp: Path(tmp).write_bytes(data)))
        return

    def put() -> None:
        with fs.open_output_stream(path) as f:
            f.write(data)
    _guard(location, "write", put)


def list_files(location: str) -> list[str]:
    """Return the paths (relative to `location`, '/'-separated) of every file below the folder `location`."""
    fs, root = filesystem(location)
    infos = _guard(location, "list", lambda: fs.get_file_info(pafs.FileSelector(root, recursive=True,
                                                                               allow_not_found=True)))
    prefix = root.rstrip("/") + "/"
    return sorted(i.path[len(prefix):] for i in infos if i.type == pafs.FileType.File and i.path.startswith(prefix))


def parent(location: str) -> str:
    """Return the folder that holds `location`."""
    return location.rstrip("/").rsplit("/", 1)[0] if is_uri(location) else str(Path(location).parent)


def list_folders(location: str) -> list[str]:
    """Return the names of the folders directly in the folder `location` (none when it does not exist)."""
    fs, root = filesystem(location)
    infos = _guard(location, "list", lambda: fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def copy_file(source: str, target: str) -> None:
    """Copy the file `source` to `target` on the same storage (server-side on object stores; a real copy locally)."""
    fs, src = filesystem(source)
    _, dst = filesystem(target)
    if isinstance(fs, pafs.LocalFileSystem):  # a copy, never a link: a write into one must not change the other
        _guard(target, "write", lambda: _write_local(dst, lambda tmp: shutil.copyfile(src, tmp)))
        return
    _guard(target, "write", lambda: fs.copy_file(src, dst))


def move(source: str, target: str) -> None:
    """Move the file or folder `source` to `target` on the same storage (a rename locally; on an object store, which
    has no folders to rename, every file of a folder copied server-side first, then the originals deleted, so a
    crash in between leaves both copies, never neither)."""
    fs, src = filesystem(source)
    _, dst = filesystem(target)
    if isinstance(fs, pafs.LocalFileSystem) or fs.get_file_info(src).type != pafs.FileType.Directory:
        _guard(target, "move", lambda: fs.move(src, dst))
        return

    def copy_tree() -> None:
        for info in fs.get_file_info(pafs.FileSelector(src, recursive=True)):
            if info.type == pafs.FileType.File:
                fs.copy_file(info.path, dst + info.path[len(src):])
        fs.delete_dir(src)
    _guard(target, "move", copy_tree)


def upload_file(local_path: str | Path, location: str) -> None:
    """Copy the local file `local_path` to `location` (whole or not at all, as `write_bytes`; a copy, never a link)."""
    fs, path = filesystem(location)
    if isinstance(fs, pafs.LocalFileSystem):
        _guard(location, "write", lambda: _write_local(path, lambda tmp: shutil.copyfile(local_path, tmp)))
        return
    _guard(location, "write", lambda: pafs.copy_files(str(Path(local_path).resolve()), path,
                                                      source_filesystem=pafs.LocalFileSystem(),
                                                      destination_filesystem=fs))


def download_files(location: str, names: list[str], local_dir: str | Path) -> None:
    """Copy the files `names` (relative to the folder `location`) into the local folder `local_dir`."""
    fs, root = filesystem(location)
    for name in names:
        target = Path(local_dir, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = f"{root.rstrip('/')}/{name}"
        if isinstance(fs, pafs.LocalFileSystem):
            _guard(join(location, name), "read", lambda: _write_local(str(target), lambda t: shutil.copyfile(source, t)))
            continue
        _guard(join(location, name), "read", lambda: pafs.copy_files(source, str(target), source_filesystem=fs,
                                                                     destination_filesystem=pafs.LocalFileSystem()))


def check_writable(location: str) -> None:
    """Return None once a probe file could be written to, read from and deleted in `location`; else StorageError."""
    fs, path = filesystem(location)
    # A name of its own: two drivers probing one experiment at once must not delete each other's probe.
    probe = f"{path.rstrip('/')}/.xlamaml-write-probe-{os.getpid()}-{secrets.token_hex(4)}"
    _guard(location, "create the folder", lambda: fs.create_dir(path, recursive=True))

    def round_trip() -> None:
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        with fs.open_input_stream(probe) as f:
            if f.read() != b"ok":
                raise OSError("a probe file read back differently")
        fs.delete_file(probe)
    _guard(location, "write", round_trip)
