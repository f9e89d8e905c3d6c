"""Taking the first rows of a data set, for quick runs and fixed-size evaluations."""

from __future__ import annotations

from typing import TypeVar

D = TypeVar("D")  # a datasets.Dataset (anything with __len__ and select)


def limit(dataset: D, max_examples: int | None, start: int = 0) -> D:
    """Return `max_examples` rows of a dataset from row `start` on (every row from there when None)."""
    n = len(dataset)  # type: ignore[arg-type]
    if start and start >= n:
        raise ValueError(f"a data set of {n} rows has none from row {start} on")
    stop = n if max_examples is None else min(n, start + max_examples)
    if start == 0 and stop == n:
        return dataset
    # Leading rows, not a random draw: XNLI is parallel, so every language scores the same pairs.
    return dataset.select(range(start, stop))  # type: ignore[attr-defined]
