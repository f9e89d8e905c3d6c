"""Language codes of the benchmarks."""

from __future__ import annotations

from collections.abc import Iterable

from xlamaml.trainables.errors import InputError

XNLI_LANGS: tuple[str, ...] = (
    "ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh",
)
MLQA_LANGS: tuple[str, ...] = ("ar", "de", "en", "es", "hi", "vi", "zh")


def unknown_lang_problem(langs: Iterable[str], known: tuple[str, ...]) -> tuple[str, str] | None:
    """Return (problem, expected) naming the first code of `langs` not in `known`, or None when all are known."""
    for lang in langs:
        if lang not in known:
            return f"unknown language code {lang!r}", f"one of {' '.join(known)}"
    return None


def check_langs(langs: list[str] | tuple[str, ...], known: tuple[str, ...], where: str) -> list[str]:
    """Return `langs` as a list, or raise InputError naming the first unknown code and `where`."""
    found = unknown_lang_problem(langs, known)
    if found is not None:
        problem, expected = found
        raise InputError(f"{where}: {problem}; expected {expected}")
    return list(langs)
