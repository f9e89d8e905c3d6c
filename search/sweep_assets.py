"""The driver's part of a sweep before any trial starts: the assets every trial needs, made once.

    data-<key>/   the tokenized sets (episode pools, dev-report sets, every target's test set, G-XLT sets) of all
                  trial configs whose encoding is the same (`data_key`), plus the English stage's sets
    base-<key>/   the English stage's checkpoint (`english_stage_key`), or the user's `base_checkpoint`

Both go to `<storage>/<name>/assets/` through `pyarrow.fs` (local, NFS, `s3://`, `gs://`, ...). Tokenizing needs
the raw data, so it runs here, on the driver; the English stage needs a GPU more than the data, so with a Ray
cluster (`--address`) it runs as a Ray task on a worker (`sweep.english_cpus`, `sweep.english_gpus`) and reads the
data asset like a trial. An asset already there (a resumed sweep) is not made again; an English stage already
in the node's cache (an earlier sweep with the same config) is published without training.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from search.space import assignments, nested
from trainables import assets, storage
from trainables.config import RunConfig, config_from_dict
from trainables.config_parsing import merge
from trainables.data_source import (
    AssetSource,
    SetKey,
    TokenizingSource,
    build_data_asset,
    data_key,
    english_sets,
    needed_sets,
)
from trainables.english_stage import english_stage, english_stage_key
from trainables.errors import ConfigError
from trainables.models import load_tokenizer
from trainables.paths import cache_dir
from trainables.stages import setup_torch
from trainables.tasks.registry import get_task
from trainables.trainable import trial_values

log = logging.getLogger("xlamaml")


def trial_configs(run: dict[str, Any], mode: str, names: list[str], seeds: list[int],
                  grid: dict[str, list]) -> list[RunConfig]:
    """Return the run config of every trial a sweep starts (optuna mode: every assignment x seed, as sampled)."""
    axes = list(grid.items()) if mode == "grid" else []
    out = []
    for name, seed in itertools.product(names, seeds):
        for combo in itertools.product(*(values for _, values in axes)):
            values = merge(run, {"assignment": name, "seed": seed, **nested(dict(zip((k for k, _ in axes), combo)))})
            try:
                out.append(config_from_dict(trial_values(values)))
            except ConfigError as e:  # that trial errors alone, with this message; the others need their data
                log.warning("sweep: trial %s, seed %s, %s will fail: %s", name, seed, dict(zip(grid, combo)), e)
    return out


def publish_data(base: RunConfig, trials: list[RunConfig], assets_root: str) -> None:
    """Make the data asset of every encoding the trials (and the English stage of `base`) use, unless it exists."""
    task = get_task(base.task)
    groups: dict[str, dict[SetKey, None]] = {}
    configs: dict[str, RunConfig] = {}
    for cfg, keys in [(base, english_sets(base))] + [(c, needed_sets(c, task)) for c in trials]:
        key = data_key(cfg, task)
        configs.setdefault(key, cfg)
        groups.setdefault(key, {}).update(dict.fromkeys(keys))
    for key, keys in groups.items():
        location = storage.join(assets_root, f"data-{key}")
        if assets.read_manifest(location) is not None:
            log.info("sweep assets: %s is there already", location)
            continue
        t0 = time.perf_counter()
        cfg = configs[key]
        source = TokenizingSource(cfg, task, load_tokenizer(cfg.model))
        with tempfile.TemporaryDirectory(prefix="xlamaml-data-", dir=_scratch()) as tmp:
            meta = build_data_asset(source, keys, Path(tmp))
            manifest = assets.publish(Path(tmp), location, meta)
        size = sum(f["bytes"] for f in manifest["files"].values())
        log.info("sweep assets: %d tokenized sets (%.1f MB) in %s after %.0f s", len(manifest["files"]), size / 1e6,
                 location, time.perf_counter() - t0)


def _scratch() -> Path:
    """Return a local folder for assets being made (in the cache: /tmp may be small)."""
    path = cache_dir() / "scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def english_stage_from_assets(run: dict[str, Any], assets_root: str, location: str) -> str:
    """Build (or find in this node's cache) the English stage of `run` from the data asset, publish it; return where."""
    cfg = config_from_dict(run)
    setup_torch(cfg)
    task = get_task(cfg.task)
    folder = assets.fetch(storage.join(assets_root, f"data-{data_key(cfg, task)}"))
    out = english_stage(cfg, task, source=AssetSource(cfg, task, folder, assets.local_manifest(folder)["meta"]))
    assets.publish(out, location, {"english_stage_key": english_stage_key(cfg, task)})
    return location


def publish_base(run: dict[str, Any], assets_root: str, remote: bool, cpus: float, gpus: float) -> str:
    """Return the asset location of the sweep's base checkpoint, made and published first if it is not there yet."""
    cfg = config_from_dict(run)
    if cfg.base_checkpoint:  # the user's own base: published as it is, named by its content
        folder = Path(cfg.base_checkpoint)
        location = storage.join(assets_root, f"base-{assets.folder_key(folder)}")
        if assets.read_manifest(location) is None:
            assets.publish(folder, location)
        return location
    location = storage.join(assets_root, f"base-{english_stage_key(cfg, get_task(cfg.task))}")
    if assets.read_manifest(location) is not None:
        return location
    if remote:  # on a worker: the head needs no GPU, and the task reads the data asset, not the head's files
        task = ray.remote(english_stage_from_assets).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        return ray.get(task.remote(run, assets_root, location))
    return english_stage_from_assets(run, assets_root, location)


def prepare_assets(run: dict[str, Any], sweep: Any, assets_root: str, remote: bool) -> dict[str, Any]:
    """Return the run config trials start from: the sweep's data and base checkpoint published as assets."""
    base = config_from_dict(run)
    names = assignments(sweep.assignments)
    publish_data(base, trial_configs(run, sweep.mode, names, sweep.seeds, sweep.grid), assets_root)
    location = publish_base(run, assets_root, remote, sweep.english_cpus, sweep.english_gpus)
    return merge(run, {"base_checkpoint": location, "assets": assets_root})
