"""The driver's part of a sweep before any trial starts: the assets every trial needs, made once.

    data-<key>/   the tokenized sets (episode pools, dev-report sets, every target's test set, G-XLT sets) of all
                  trial configs whose encoding is the same (`data_key`)
    english-<key>/  the English stage's sets (its training data, en dev and test to score it)
    base-<key>/   the English stage's checkpoint (`english_stage_key`), or the user's `base_checkpoint`
    features-<key>/  with frozen embeddings and `meta.freeze_layers` >= 1: the hidden states after the frozen
                  layers of every set the trials read (`trainables.feature_cache`), computed from the base once

All go to `<storage>/<name>/assets/` through `pyarrow.fs` (local, NFS, `s3://`, `gs://`, ...). Tokenizing needs
the raw data, so it runs here, on the driver; the English stage needs a GPU more than the data, so with a Ray
cluster (`--address`) it runs as a Ray task on a worker (`sweep.english_cpus`, `sweep.english_gpus`) and reads the
data asset like a trial. An asset already there is not made again (a resume makes only data assets gone missing);
an English stage with the same key is reused, not trained: copied from another experiment of the same storage (on
object stores a server-side copy), or published from the node's cache.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayTaskError

from xlamaml.search.spec import Sweep
from xlamaml.experiment import assets, storage
from xlamaml.trainables.config import RunConfig, config_from_dict
from xlamaml.trainables.config_parsing import merge
from xlamaml.trainables.data_source import (
    AssetSource,
    SetKey,
    TokenizingSource,
    build_data_asset,
    data_key,
    english_sets,
    needed_sets,
)
from xlamaml.trainables.english_stage import english_stage, english_stage_key
from xlamaml.trainables.feature_cache import build_features, cached_layers, source_sets
from xlamaml.trainables.errors import ConfigError, MissingFileError, XlamamlError
from xlamaml.trainables.models import load_tokenizer
from xlamaml.trainables.paths import cache_dir
from xlamaml.trainables.stages import setup_torch
from xlamaml.trainables.tasks.base import Task
from xlamaml.trainables.tasks.registry import get_task
from xlamaml.search.trainable import feature_location

log = logging.getLogger("xlamaml")


def trial_configs(sw: Sweep) -> list[RunConfig]:
    """Return the run config of every trial the sweep `sw` starts (optuna mode: every assignment x seed; `sweep.space`
    may not change the data, see Sweep.validate; adaptive: every dev size its rungs score, each a set of its own)."""
    combos = sw.combos if sw.sweep.mode == "grid" else [{}]
    if sw.sweep.mode == "adaptive":  # its rungs score dev on their first items
        sizes = dict.fromkeys([r.dev_items for r in sw.rungs] + [sw.cfg.eval.dev_max_examples])
        combos = [{"eval.dev_max_examples": size} for size in sizes]
    out = []
    for name, seed in itertools.product(sw.assignments, sw.sweep.seeds):
        for combo in combos:
            try:
                out.append(sw.trial_config(name, seed, combo))
            except ConfigError as e:  # that trial errors alone, with this message; the others need their data
                log.warning("sweep: trial %s, seed %s, %s will fail: %s", name, seed, combo, e)
    return out


def publish_data(base: RunConfig, trials: list[RunConfig], assets_root: str, task: Task) -> None:
    """Make the data assets of every encoding the trials use, and the English stage's own data asset (what only
    that stage reads stays out of the trials' downloads), unless they exist."""
    groups: dict[str, dict[SetKey, None]] = {}
    configs: dict[str, RunConfig] = {}
    for cfg in trials:
        name = f"data-{data_key(cfg, task)}"
        configs.setdefault(name, cfg)
        groups.setdefault(name, {}).update(dict.fromkeys(needed_sets(cfg, task)))
    if not base.base_checkpoint:  # no English stage to build, no English data
        name = f"english-{data_key(base, task)}"
        configs[name], groups[name] = base, dict.fromkeys(english_sets(base))
    for name, keys in groups.items():
        location = storage.join(assets_root, name)
        if assets.read_manifest(location) is not None:
            log.info("sweep assets: %s is there already", location)
            continue
        t0 = time.perf_counter()
        cfg = configs[name]
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


def english_stage_from_assets(run: dict[str, Any], assets_root: str, location: str, key: str) -> str:
    """Build (or find in this node's cache) the English stage of `run` from the data asset, publish it; return where.
    It may run as a Ray task on a worker: a process of its own, so it resolves its task itself."""
    cfg = config_from_dict(run)
    setup_torch(cfg)
    task = get_task(cfg.task)
    data = storage.join(assets_root, f"english-{data_key(cfg, task)}")
    folder = assets.fetch(data)
    source = AssetSource(cfg, task, folder, assets.local_manifest(folder)["meta"], data)
    out = english_stage(cfg, task, source=source, key=key)
    assets.publish(out, location, {"english_stage_key": key})
    return location


def publish_base(sw: Sweep, assets_root: str, *, remote: bool) -> str:
    """Return the asset location of the sweep's base checkpoint, made and published first if it is not there yet."""
    run, cfg, task = sw.run, sw.cfg, sw.task
    cpus, gpus = sw.sweep.english_cpus, sw.sweep.english_gpus
    if cfg.base_checkpoint:  # the user's own base: published as it is (copied, not linked), named by its content
        folder = Path(cfg.base_checkpoint)
        if not (folder / "config.json").is_file():
            raise MissingFileError(f"config key base_checkpoint: {folder} is not a model directory; expected a "
                                   f"save_pretrained folder with a config.json")
        manifest = assets.make_manifest(folder)
        location = storage.join(assets_root, f"base-{assets.manifest_digest(manifest)}")
        if assets.read_manifest(location) is None:
            assets.publish(folder, location, manifest=manifest)
        return location
    key = english_stage_key(cfg, task)  # the config and the content of its English data, read here on the driver
    name = f"base-{key}"
    location = storage.join(assets_root, name)
    if assets.read_manifest(location) is not None:
        return location
    for other in assets.find_in_other_experiments(assets_root):  # an earlier sweep in this storage made it
        if assets.read_manifest(storage.join(other, name)) is not None:
            log.info("sweep assets: English stage %s reused from %s", name, other)
            assets.copy(storage.join(other, name), location)
            return location
    if remote:  # on a worker: the head needs no GPU, and the task reads the data asset, not the head's files
        task = ray.remote(english_stage_from_assets).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        # torch uses as many threads as the task holds CPUs (Ray sets OMP_NUM_THREADS=1 otherwise).
        return _remote_result(task.remote(merge(run, {"threads": max(1, int(cpus))}), assets_root, location, key))
    return english_stage_from_assets(run, assets_root, location, key)


def features_from_assets(run: dict[str, Any], assets_root: str, location: str, keys: list[SetKey]) -> str:
    """Compute the features of the sets `keys` from the sweep's base and data assets and publish them at `location`;
    return it. Like the English stage it may run as a Ray task on a worker, so it resolves its task itself."""
    cfg = config_from_dict(run)
    device = setup_torch(cfg)
    task = get_task(cfg.task)
    base = assets.fetch(cfg.base_checkpoint)
    data = storage.join(assets_root, f"data-{data_key(cfg, task)}")
    folder = assets.fetch(data)
    source = AssetSource(cfg, task, folder, assets.local_manifest(folder)["meta"], data)
    model, _ = task.load_model(cfg.model, str(base), cfg.seed, tokenizer=False)
    model.to(device)
    with tempfile.TemporaryDirectory(prefix="xlamaml-features-", dir=_scratch()) as tmp:
        build_features(model, source_sets(source, keys), Path(tmp), layers=cfg.meta.freeze_layers,
                       dtype=cfg.meta.feature_dtype, batch_size=cfg.eval.batch_size, device=device)
        assets.publish(Path(tmp), location, {"layers": cfg.meta.freeze_layers, "dtype": cfg.meta.feature_dtype,
                                             "sets": sorted(k.file_name for k in keys)})
    return location


def publish_features(run: dict[str, Any], trials: list[RunConfig], task: Task, *, remote: bool, cpus: float,
                     gpus: float) -> None:
    """Make the frozen-layer feature caches the trials read (one per base, frozen depth and data), unless they exist:
    the hidden states after `meta.freeze_layers` of every set the trials use, computed once for the whole sweep."""
    groups: dict[str, tuple[RunConfig, dict[SetKey, None]]] = {}
    for cfg in trials:
        cfg = dataclasses.replace(cfg, base_checkpoint=run["base_checkpoint"], assets=run["assets"])
        if cached_layers(cfg) is None:
            continue
        location = feature_location(cfg, task)
        groups.setdefault(location, (cfg, {}))[1].update(dict.fromkeys(needed_sets(cfg, task)))
    for location, (cfg, keys) in groups.items():
        if assets.read_manifest(location) is not None:
            log.info("sweep assets: %s is there already", location)
            continue
        if _copied_from_other_experiment(location, set(keys)):
            continue
        t0 = time.perf_counter()
        values = cfg.to_dict()
        if remote:  # beside the English stage's place: it needs the model more than the driver does
            build = ray.remote(features_from_assets).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
            _remote_result(build.remote(merge(values, {"threads": max(1, int(cpus))}), cfg.assets, location,
                                        list(keys)))
        else:
            features_from_assets(values, cfg.assets, location, list(keys))
        manifest = assets.read_manifest(location) or {"files": {}}
        size = sum(f["bytes"] for f in manifest["files"].values())
        log.info("sweep assets: feature cache of %d sets (%.1f MB, layers 0-%d) in %s after %.0f s",
                 len(manifest["files"]), size / 1e6, cfg.meta.freeze_layers - 1, location, time.perf_counter() - t0)


def _copied_from_other_experiment(location: str, keys: set[SetKey]) -> bool:
    """Return True when an earlier sweep of this storage made the same feature asset (same base, depth and data)
    for every set `keys` names, now copied to `location`."""
    name = assets.asset_name(location)
    root = location.rstrip("/").rsplit("/", 1)[0]
    for other in assets.find_in_other_experiments(root):
        manifest = assets.read_manifest(storage.join(other, name))
        if manifest is not None and set(manifest.get("meta", {}).get("sets", [])) >= {k.file_name for k in keys}:
            log.info("sweep assets: feature cache %s reused from %s", name, other)
            assets.copy(storage.join(other, name), location)
            return True
    return False


def _remote_result(ref: Any) -> Any:
    """Return what the Ray task `ref` returned; the project's own error on the worker stays one line here."""
    try:
        return ray.get(ref)
    except RayTaskError as e:
        if isinstance(e.cause, XlamamlError):
            raise e.cause from None
        raise


def prepare_assets(sw: Sweep, assets_root: str, remote: bool) -> dict[str, Any]:
    """Return the run config trials start from: the sweep's data and base checkpoint published as assets (on a
    resume, its run config already names its base asset: only data assets gone missing are made again)."""
    run, base, task, sweep = sw.run, sw.cfg, sw.task, sw.sweep
    trials = trial_configs(sw)
    publish_data(base, trials, assets_root, task)
    if not base.assets:  # a new sweep (a resumed one has its base asset recorded)
        location = publish_base(sw, assets_root, remote=remote)
        run = merge(run, {"base_checkpoint": location, "assets": assets_root})
    publish_features(run, trials, task, remote=remote, cpus=sweep.english_cpus, gpus=sweep.english_gpus)
    return run
