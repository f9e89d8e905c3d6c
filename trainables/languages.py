"""Language codes of the benchmarks."""

XNLI_LANGS: tuple[str, ...] = (
    "ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh",
)
MLQA_LANGS: tuple[str, ...] = ("ar", "de", "en", "es", "hi", "vi", "zh")


def check_langs(langs: list[str] | tuple[str, ...], known: tuple[str, ...], where: str) -> list[str]:
    """Return `langs` as a list, or raise ValueError naming the first unknown code and `where`."""
    for lang in langs:
        if lang not in known:
            raise ValueError(f"{where}: unknown language code {lang!r}; expected one of {' '.join(known)}")
    return list(langs)
