"""Argument checks shared by the readers: split names and language codes."""

from __future__ import annotations

from trainables.data.errors import DataError

SPLITS: dict[str, str] = {"dev": "dev", "validation": "dev", "test": "test"}


def normalize_split(split: str, source: str) -> str:
    """Return 'dev' or 'test' for a split name ('validation' counts as dev)."""
    if split not in SPLITS:
        raise DataError(source, f"split {split!r}", "dev, validation or test")
    return SPLITS[split]


def check_langs(langs: list[str] | tuple[str, ...] | str, known: tuple[str, ...], source: str) -> list[str]:
    """Return `langs` as a list of codes from `known` (one bare string counts as one code)."""
    langs = [langs] if isinstance(langs, str) else list(langs)
    for lang in langs:
        if lang not in known:
            raise DataError(source, f"unknown language code {lang!r}", f"one of {' '.join(known)}")
    return langs
