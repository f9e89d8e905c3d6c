"""Argument checks shared by the readers: split names and language codes."""

from __future__ import annotations

from xlamaml.trainables.data.errors import DataError
from xlamaml.trainables.languages import unknown_lang_problem

SPLITS: dict[str, str] = {"dev": "dev", "validation": "dev", "test": "test"}


def normalize_split(split: str, source: str) -> str:
    """Return 'dev' or 'test' for a split name ('validation' counts as dev)."""
    if split not in SPLITS:
        raise DataError(source, f"split {split!r}", "dev, validation or test")
    return SPLITS[split]


def check_langs(langs: list[str] | tuple[str, ...] | str, known: tuple[str, ...], source: str) -> list[str]:
    """Return `langs` as a list of codes from `known` (one bare string counts as one code), else raise DataError."""
    langs = [langs] if isinstance(langs, str) else list(langs)
    found = unknown_lang_problem(langs, known)
    if found is not None:
        raise DataError(source, *found)
    return langs
