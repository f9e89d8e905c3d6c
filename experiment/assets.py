"""Sweep assets: folders the driver makes once and every trial reads (the base checkpoint, the tokenized data).

An asset lives in the experiment's storage, `<storage>/<name>/assets/<kind>-<key>/`, where `key` hashes what the
asset was made from. Its `manifest.json`, written last, lists the sha256 and size of every file, so an asset
without a manifest is unfinished and a file that does not match is a partial or damaged upload.

A trial fetches an asset into the node-local cache (`<cache>/assets/<kind>-<key>-<manifest hash>`) once per node
(a local storage is hard-linked, not copied, where it can be): a file lock
makes concurrent trials on one node wait for the first one's download, and every file is checked against the
manifest before the asset is used. A file that does not match is fetched again once; if it still does not match,
the trial fails with a line naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from xlamaml.experiment import storage
from xlamaml.trainables.errors import XlamamlError
from xlamaml.trainables.local_files import exclusive_lock, sha256_of, write_text_whole
from xlamaml.trainables.paths import cache_dir

log = logging.getLogger("xlamaml")
MANIFEST = "manifest.json"


class AssetError(XlamamlError, OSError):
    """An asset that is missing, unfinished, or whose files do not match its manifest."""


def make_manifest(folder: Path, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the manifest of the local folder `folder`: every file's sha256 and size, plus `meta`."""
    files = {p.relative_to(folder).as_posix(): {"sha256": sha256_of(p), "bytes": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    return {"files": files, "meta": meta or {}}


def manifest_digest(manifest: dict[str, Any], length: int = 16) -> str:
    """Return a short hash of a manifest's files (names and sha256): the content key of an asset."""
    blob = json.dumps({name: f["sha256"] for name, f in manifest["files"].items()}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def local_manifest(folder: Path) -> dict[str, Any]:
    """Return the manifest of a fetched asset's local copy."""
    return json.loads((folder / MANIFEST).read_text())


def read_manifest(location: str) -> dict[str, Any] | None:
    """Return the manifest of the asset at `location`, or None when there is none (absent or unfinished)."""
    where = storage.join(location, MANIFEST)
    if not storage.exists(where):
        return None
    try:
        return json.loads(storage.read_bytes(where))
    except ValueError:
        raise AssetError(f"{where}: not valid JSON; expected an asset manifest (upload it again)") from None


def publish(local_dir: Path, location: str, meta: dict[str, Any] | None = None,
            manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copy the local folder `local_dir` to the asset `location`, manifest last; return the manifest. Copies, never
    links: the storage, the caches and every experiment hold files of their own, so a write into one changes no
    other."""
    manifest = manifest or make_manifest(local_dir, meta)
    for name in manifest["files"]:  # a copy cut short leaves an asset without a manifest: unfinished
        storage.upload_file(local_dir / name, storage.join(location, name))
    storage.write_bytes(storage.join(location, MANIFEST), json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


def copy(source: str, target: str) -> dict[str, Any]:
    """Copy the published asset `source` to `target` on the same storage, manifest last; return the manifest."""
    manifest = read_manifest(source)
    if manifest is None:
        raise AssetError(f"{source}: asset not found or unfinished (no {MANIFEST}); expected a published asset")
    for name in manifest["files"]:
        storage.copy_file(storage.join(source, name), storage.join(target, name))
    storage.copy_file(storage.join(source, MANIFEST), storage.join(target, MANIFEST))
    return manifest


def find_in_other_experiments(assets_root: str) -> Iterator[str]:
    """Yield the asset folders of the other experiments beside the one whose asset folder is `assets_root`."""
    experiment = storage.parent(assets_root)
    root, own = storage.parent(experiment), asset_name(experiment)
    for name in storage.list_folders(root):
        if name != own:
            yield storage.join(root, name, asset_name(assets_root))


def asset_name(location: str) -> str:
    """Return the asset's folder name (`<kind>-<key>`), which names its node-local copy too."""
    return location.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]


def _mismatches(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Return the names of the files in `folder` that are missing or differ from `manifest`."""
    bad = []
    for name, want in manifest["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != want["bytes"] or sha256_of(path) != want["sha256"]:
            bad.append(name)
    return bad


VERIFIED = ".verified.json"  # in a node-local copy: each file's (size, mtime) when it last matched the manifest


def _stats(folder: Path, names: list[str]) -> dict[str, list[int]]:
    return {n: [(folder / n).stat().st_size, (folder / n).stat().st_mtime_ns] for n in names if (folder / n).is_file()}


def still_intact(local: Path, manifest: dict[str, Any]) -> bool:
    """Return whether the node-local copy `local` still matches `manifest`: each file's size and mtime as when it
    was last checked (cheap), else its sha256 (then the sizes and mtimes are recorded again)."""
    names = list(manifest["files"])
    try:
        recorded = json.loads((local / VERIFIED).read_text())
    except (OSError, ValueError):
        recorded = None
    if recorded == _stats(local, names):
        return True
    if _mismatches(local, manifest):
        return False
    write_text_whole(local / VERIFIED, json.dumps(_stats(local, names)))
    return True


def fetch(location: str, cache: Path | None = None) -> Path:
    """Return the node-local copy of the asset at `location`, downloading and checking it first if needed."""
    manifest = read_manifest(location)
    if manifest is None:
        raise AssetError(f"{location}: asset not found or unfinished (no {MANIFEST}); expected the sweep's driver "
                         f"to have published it (xlamaml sweep --resume publishes missing data assets again)")
    # The local copy is named by the content's hash too: two sweeps may hold different sets under one asset name.
    local = (cache or cache_dir() / "assets") / f"{asset_name(location)}-{manifest_digest(manifest, 12)}"
    with exclusive_lock(local.parent / f".{local.name}.lock"):
        if (local / MANIFEST).is_file():
            if still_intact(local, manifest):
                return local
            log.warning("asset %s: the node's copy %s no longer matches the manifest (changed in place?); fetching "
                        "it again", location, local)
            shutil.rmtree(local)
        for stale in local.parent.glob(f".{local.name}-*"):  # what a fetch killed mid-download left
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{local.name}-", dir=local.parent))
        try:
            names = list(manifest["files"])
            for attempt in (1, 2):
                storage.download_files(location, names, tmp)
                names = _mismatches(tmp, manifest)
                if not names:
                    break
                log.warning("asset %s: %d file(s) do not match the manifest (%s); fetching them again", location,
                            len(names), names[0])
            if names:
                raise AssetError(f"{storage.join(location, names[0])}: does not match the sha256 in its asset's "
                                 f"manifest after two downloads; expected an intact upload (publish the asset again)")
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            (tmp / VERIFIED).write_text(json.dumps(_stats(tmp, list(manifest["files"]))))
            os.replace(tmp, local)  # the folder appears whole, manifest included, or not at all
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("asset %s: fetched to %s", location, local)
    return local
