"""Taking the first rows of a data set, for quick runs and fixed-size evaluations."""

from __future__ import annotations

from typing import TypeVar

D = TypeVar("D")  # a datasets.Dataset (anything with __len__ and select)


def limit(dataset: D, max_examples: int | None) -> D:
    """Return the first `max_examples` rows of a dataset (all rows when None)."""
    if max_examples is None or max_examples >= len(dataset):  # type: ignore[arg-type]
        return dataset
    # The first rows, not a random draw: XNLI is parallel, so every language scores the same pairs.
    return dataset.select(range(max_examples))  # type: ignore[attr-defined]
