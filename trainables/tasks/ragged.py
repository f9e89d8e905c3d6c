"""Ragged rows (token ids, offsets) packed into flat arrays and back: how encoded sets are stored as `.npz`.

Plain numbers and fixed-width strings only, so a stored set loads with `allow_pickle=False`: reading one never
runs code.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pack(rows: Sequence[Sequence[int]] | Sequence[np.ndarray], dtype: type = np.int32) -> tuple[np.ndarray, np.ndarray]:
    """Return (flat values, offsets (rows + 1,)) of ragged rows; rows may be lists or arrays of shape (T, ...)."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([np.asarray(r, dtype=dtype) for r in rows]) if len(rows) else np.zeros(0, dtype=dtype)
    return flat, offsets


def unpack_lists(flat: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    """Return the rows of (flat, offsets) as lists of Python ints."""
    values = flat.tolist()
    bounds = offsets.tolist()
    return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def unpack_arrays(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Return the rows of (flat, offsets) as array views, keeping each row's trailing shape."""
    return [flat[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


def pack_strings(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return (the UTF-8 bytes of `values` joined, as uint8, and byte offsets (len + 1,)): compact for long texts."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def unpack_strings(joined: np.ndarray, offsets: np.ndarray) -> list[str]:
    """Return the strings packed by `pack_strings`."""
    data = joined.tobytes()
    bounds = offsets.tolist()
    return [data[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]
