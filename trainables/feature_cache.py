"""The frozen-layer feature cache: hidden states after the bottom L encoder layers, computed once, read by every trial.

With the embeddings and the bottom `meta.freeze_layers = L` layers frozen, every trial of a sweep would recompute the
same hidden states after layer L for the same examples, in every meta step and every evaluation. Here they are
computed once per (base checkpoint, L, data encoding), stored per encoded set as one float16 array of the rows'
tokens one after another (no padding), and read memory-mapped.

How a model runs from the cache, without any task code knowing: the cached set's `input_ids` are rewritten into
*feature indices* (token j of row r of a set whose features start at `base` becomes `base + offset[r] + j`; padding
becomes 0, a row of zeros), and the model's embedding module is replaced by `FeatureLookup`, which returns those
rows of the cache as the "embeddings"; the bottom L layers are replaced by `SkipLayer`. Collate, loss, scoring and
the meta step then run unchanged, through the layers above L and the head only.

The frozen bottom is a fixed feature extractor, cached or not: it runs without dropout (`models.train_mode`), so a
cached run equals the uncached one (float32 cache: the same logits up to float error; float16: rounded features).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from xlamaml.trainables.config import RunConfig
from xlamaml.trainables.data_source import DataSource, SetKey, data_key, english_sets
from xlamaml.trainables.errors import XlamamlError
from xlamaml.trainables.local_files import exclusive_lock
from xlamaml.trainables.models import encoder_layers
from xlamaml.trainables.paths import cache_dir
from xlamaml.trainables.tasks.base import Task
from xlamaml.trainables.tasks.batching import pad_inputs

log = logging.getLogger("xlamaml")

DTYPES = {"float16": np.float16, "float32": np.float32}
SUFFIX = ".features.npy"


class FeatureCacheError(XlamamlError, OSError):
    """A feature file that does not fit the set it is read for (another encoding or a cut file)."""


def cached_layers(cfg: RunConfig) -> int | None:
    """Return L when the run reads its hidden states after layer L from the cache, else None."""
    m, fs = cfg.meta, cfg.few_shot
    if not m.feature_cache or m.freeze_layers < 1 or not m.freeze_embeddings:
        return None
    if fs.enabled and not (fs.freeze_embeddings and fs.freeze_layers >= m.freeze_layers):
        return None  # the few-shot stage trains layers the cache would have fixed
    return m.freeze_layers


def english_cached_layers(cfg: RunConfig) -> int | None:
    """Return L when the English stage trains on cached hidden states after layer L, else None."""
    e = cfg.english
    return e.freeze_layers if cfg.meta.feature_cache and e.freeze_embeddings and e.freeze_layers >= 1 else None


def feature_key(cfg: RunConfig, task: Task, base_id: str) -> str:
    """Return a short hash naming a sweep's feature asset of `cfg`'s sets for the base asset `base_id`."""
    relevant = {"base": base_id, "layers": cfg.meta.freeze_layers, "dtype": cfg.meta.feature_dtype,
                "data": data_key(cfg, task)}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def bottom_key(model: torch.nn.Module, layers: int, dtype: str) -> str:
    """Return a short hash of the frozen bottom's weights (embeddings and layers below `layers`), `layers` and
    `dtype`: what a set's features depend on besides its tokens. The English stage (when it freezes the same bottom)
    and every later run from its checkpoint share one key, so they share the node's cache."""
    h = hashlib.sha256(f"{type(model.base_model).__name__}|{layers}|{dtype}".encode())
    modules = [("embeddings", model.base_model.embeddings)]
    modules += [(f"layer.{i}", layer) for i, layer in enumerate(list(encoder_layers(model))[:layers])]
    for prefix, module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            h.update(f"{prefix}.{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


def set_id(enc: Any) -> str:
    """Return a short hash of the tokens of an encoded set (ids and token types, row by row): its features' name."""
    holder = _token_holder(enc)
    h = hashlib.sha256()
    h.update(row_lengths(enc).tobytes())
    h.update(np.concatenate([np.asarray(r, dtype=np.int64) for r in holder.input_ids] or [np.zeros(0)]).tobytes())
    if holder.token_type_ids is not None:
        h.update(np.concatenate([np.asarray(r, dtype=np.int8) for r in holder.token_type_ids]).tobytes())
    return h.hexdigest()[:20]


def feature_file(folder: Path, enc: Any) -> Path:
    """Return the path of the encoded set `enc`'s features in the cache folder `folder` (named by its tokens)."""
    return folder / f"{set_id(enc)}{SUFFIX}"


# --- rows of an encoded set ------------------------------------------------------------------------------------


def _token_holder(enc: Any) -> Any:
    """Return the object holding `input_ids` and `pad_id` of an encoded set (a QA training view keeps its windows
    in `.enc`)."""
    return enc.enc if hasattr(enc, "enc") and not hasattr(enc, "input_ids") else enc


def row_lengths(enc: Any) -> np.ndarray:
    """Return the token count of every row of the encoded set `enc`, (rows,) int64."""
    return np.asarray([len(ids) for ids in _token_holder(enc).input_ids], dtype=np.int64)


def with_feature_ids(enc: Any, start: int) -> Any:
    """Return `enc` with each row's token ids replaced by its feature indices (first token at `start`; pad 0)."""
    holder = _token_holder(enc)
    ids, pos = [], start
    for row in holder.input_ids:
        ids.append(list(range(pos, pos + len(row))))
        pos += len(row)
    new = dataclasses.replace(holder, input_ids=ids, pad_id=0)
    return new if holder is enc else dataclasses.replace(enc, enc=new)


# --- computing features ----------------------------------------------------------------------------------------


class _Stop(Exception):
    """Raised by a forward hook to end a forward pass once the cached layer has run."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden


@torch.no_grad()
def extract_features(model: torch.nn.Module, enc: Any, layers: int, *, dtype: str, batch_size: int = 64,
                     device: torch.device | str = "cpu") -> np.ndarray:
    """Return the hidden states after encoder layer `layers` of every token of every row of `enc`, rows one after
    another without padding: (total tokens, hidden) in `dtype`."""
    holder = _token_holder(enc)
    lengths = row_lengths(enc)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    out = np.empty((int(offsets[-1]), model.config.hidden_size), dtype=DTYPES[dtype])
    stop_at = model.base_model.embeddings if layers == 0 else encoder_layers(model)[layers - 1]

    def stop(_module, _inputs, output):
        raise _Stop(output[0] if isinstance(output, tuple) else output)

    handle = stop_at.register_forward_hook(stop)
    was_training = model.training
    model.eval()  # the frozen bottom runs without dropout (models.train_mode)
    try:
        order = np.argsort(lengths, kind="stable")  # similar lengths together: little padding
        for begin in range(0, len(order), batch_size):
            rows = order[begin : begin + batch_size].tolist()
            types = [holder.token_type_ids[r] for r in rows] if holder.token_type_ids is not None else None
            batch = pad_inputs([holder.input_ids[r] for r in rows], types, holder.pad_id)
            try:
                model(**{k: v.to(device) for k, v in batch.items()})
            except _Stop as s:
                hidden = s.hidden.float().cpu().numpy()  # (B, T, hidden)
            else:
                raise RuntimeError("feature extraction: the forward pass never reached the cached layer")
            for b, r in enumerate(rows):
                out[offsets[r] : offsets[r + 1]] = hidden[b, : lengths[r]]
    finally:
        handle.remove()
        model.train(was_training)
    return out


def build_features(model: torch.nn.Module, sets: Iterable[Any], folder: Path, *, layers: int, dtype: str,
                   batch_size: int, device: torch.device | str) -> list[str]:
    """Write the features of every encoded set in `sets` not in `folder` yet; return the file names of all."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for enc in sets:
        path = feature_file(folder, enc)
        if not path.is_file():
            t0 = time.perf_counter()
            feats = extract_features(model, enc, layers, dtype=dtype, batch_size=batch_size, device=device)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, feats)
            os.replace(tmp, path)  # whole or not at all
            log.info("feature cache: %d rows, %d tokens x %d, %.1f MB in %.1f s", len(enc), feats.shape[0],
                     feats.shape[1], feats.nbytes / 1e6, time.perf_counter() - t0)
        names.append(path.name)
    return list(dict.fromkeys(names))


def source_sets(source: DataSource, keys: Iterable[SetKey]) -> Iterator[Any]:
    """Yield the encoded sets `keys` name that have data (an extra set may have none)."""
    for key in dict.fromkeys(keys):
        enc = source.get(key)
        if enc is not None:
            yield enc


def ensure_local_features(model: torch.nn.Module, sets: Iterable[Any], *, layers: int, dtype: str,
                          batch_size: int, device: torch.device | str) -> Path:
    """Return the node-local cache folder of `model`'s frozen bottom holding the features of `sets`, building those
    missing (under a lock, so parallel runs on one node build each set once)."""
    folder = cache_dir() / "features" / bottom_key(model, layers, dtype)
    with exclusive_lock(cache_dir() / "locks" / f"features-{folder.name}.lock"):
        build_features(model, sets, folder, layers=layers, dtype=dtype, batch_size=batch_size, device=device)
    return folder


# --- running from the cache ------------------------------------------------------------------------------------


class FeatureTable:
    """The cached sets of one run as one index space: index 0 is a zero row (padding), each set a range after it."""

    def __init__(self, hidden_size: int):
        self.hidden_size = hidden_size
        self.segments: list[tuple[int, np.ndarray]] = []  # (first index, memory-mapped (tokens, hidden))
        self.next_index = 1

    def add(self, features: np.ndarray) -> int:
        """Return the first index of `features`, now part of the table."""
        if features.ndim != 2 or features.shape[1] != self.hidden_size:
            raise ValueError(f"features of shape {features.shape}; expected (tokens, {self.hidden_size})")
        start = self.next_index
        self.segments.append((start, features))
        self.next_index += features.shape[0]
        return start

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        """Return the rows `index` (any shape) as float32, shape index.shape + (hidden,)."""
        flat = index.reshape(-1).cpu().numpy()
        out = np.zeros((flat.size, self.hidden_size), dtype=np.float32)
        for start, feats in self.segments:
            hit = (flat >= start) & (flat < start + feats.shape[0])
            if hit.any():
                out[hit] = feats[flat[hit] - start]  # reads only these rows of the memory map
        return torch.from_numpy(out).reshape(*index.shape, self.hidden_size)


class FeatureLookup(torch.nn.Module):
    """Stands in for the embedding module: returns the cached hidden states its `input_ids` (feature indices) name."""

    def __init__(self, table: FeatureTable):
        super().__init__()
        self.table = table

    def forward(self, input_ids: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.table.lookup(input_ids).to(input_ids.device)


class SkipLayer(torch.nn.Module):
    """Stands in for a cached encoder layer: its output is already in the features."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states


def run_from_features(model: torch.nn.Module, table: FeatureTable, layers: int) -> Callable[[], None]:
    """Make `model` (in place) read its embeddings and bottom `layers` layers' output from `table`; return a function
    that puts the original modules back (before `save_pretrained`; a trial never needs them again)."""
    base, stack = model.base_model, encoder_layers(model)
    saved = (base.embeddings, [stack[i] for i in range(layers)])
    base.embeddings = FeatureLookup(table)
    for i in range(layers):
        stack[i] = SkipLayer()

    def restore() -> None:
        base.embeddings = saved[0]
        for i, layer in enumerate(saved[1]):
            stack[i] = layer
    return restore


class CachedSource(DataSource):
    """The sets of `inner`, each with its token ids turned into indices of `table` (its features loaded from
    `folder`, memory-mapped, on first use)."""

    def __init__(self, inner: DataSource, folder: Path, table: FeatureTable):
        super().__init__(inner.cfg, inner.task)
        self.inner, self.folder, self.table = inner, folder, table
        self.loaded: dict[SetKey, Any] = {}

    def get(self, key: SetKey) -> Any:
        """Return the set `key` with feature indices for token ids (None for an extra set with no data)."""
        if key not in self.loaded:
            enc = self.inner.get(key)
            self.loaded[key] = None if enc is None else self._attach(key, enc)
        return self.loaded[key]

    def _attach(self, key: SetKey, enc: Any) -> Any:
        path = feature_file(self.folder, enc)
        if not path.is_file():
            raise FeatureCacheError(f"{path}: no cached features for set {key.file_name}; expected the sweep (or the "
                                    f"run) to have built them")
        feats = np.load(path, mmap_mode="r")
        tokens = int(row_lengths(enc).sum())
        if feats.ndim != 2 or feats.shape[0] != tokens:
            raise FeatureCacheError(f"{path}: holds {feats.shape[0] if feats.ndim else 0} token rows; expected "
                                    f"{tokens} for set {key.file_name}")
        return with_feature_ids(enc, self.table.add(feats))

    def english(self) -> tuple[Any, str]:
        """Return the English training set of `inner`, with feature indices for token ids, and where it came from."""
        enc, origin = self.inner.english()
        return self._attach(english_sets(self.cfg)[0], enc), origin

    def extra_names(self, langs: list[str]) -> dict[str, list[str]]:
        """Return `inner`'s extra sets for `langs`."""
        return self.inner.extra_names(langs)
