"""Language labels in the analysis: display order, the averages, and which targets an aux label covers."""

from __future__ import annotations

from collections.abc import Iterable

from xlamaml.trainables.languages import XNLI_LANGS

# The two averages every trial reports next to its targets; they are columns, never targets.
AVERAGES: tuple[str, ...] = ("avg", "avg_excl_aux")


def label_langs(label: str) -> tuple[str, ...]:
    """Return the languages of a '+'-joined label ('bg+de' -> ('bg', 'de'); '' -> ())."""
    return tuple(lang for lang in label.split("+") if lang) if isinstance(label, str) else ()


def excluded_from_avg(aux: str) -> frozenset[str]:
    """Return the targets a trial's `avg_excl_aux` leaves out for auxiliary label `aux` (an Assignment's `aux`):
    those it trained on (trainables.assignment.Assignment.trained_on, read from the label)."""
    # English is the English stage's own language, never auxiliary: a label 'en' (x-maml:en) excludes nothing.
    return frozenset(label_langs(aux)) - {"en"}


def trained_on(aux: str, lang: str) -> bool:
    """Return whether a variant with auxiliary label `aux` trained on `lang` (Assignment.trained_on, from the label):
    its score there is no transfer result, so it is neither averaged in avg*, picked nor judged on `lang`."""
    return lang in excluded_from_avg(aux)


def order_langs(langs: Iterable[str]) -> list[str]:
    """Return the distinct language codes in paper order (XNLI order, unknown codes after, averages last)."""
    distinct = list(dict.fromkeys(langs))
    known = [lang for lang in XNLI_LANGS if lang in distinct]
    other = sorted(lang for lang in distinct if lang not in XNLI_LANGS and lang not in AVERAGES)
    return known + other + [avg for avg in AVERAGES if avg in distinct]


def label_sort_key(label: str) -> tuple:
    """Return a sort key putting single-language labels before pairs, each in XNLI order."""
    langs = label_langs(label)
    rank = {lang: i for i, lang in enumerate(XNLI_LANGS)}
    return (len(langs), tuple(rank.get(lang, len(XNLI_LANGS)) for lang in langs), label)
