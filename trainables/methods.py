"""The methods and their episode rules: the one home of what a method may combine with.

    baseline   no meta stage: the English model as is
    x-maml     support and query from the same auxiliary language, disjoint examples
    xla-maml   support and query languages differ (en -> hi, a -> b)

The rules are checked where a config is built, where an assignment string is read and where the episode
sampler starts; each caller names its own keys, so `episode_rule_error` takes the prefix of those keys
("meta." in a config, "" in the sampler) and returns the message, not an exception.
"""

from __future__ import annotations

from typing import Sequence

METHODS = ("baseline", "x-maml", "xla-maml")
META_METHODS = ("xla-maml", "x-maml")  # the methods with a meta stage (and so episodes)
SAMPLING = ("random", "cover")


def episode_rule_error(method: str, support_langs: Sequence[str], query_langs: Sequence[str], k: int, n: int,
                       parallel: bool, prefix: str = "") -> str | None:
    """Return what breaks the episode rules of `method` as `<key>: <problem>; expected ...`, or None if nothing does."""
    if method == "baseline":
        return None
    p = prefix
    if method == "x-maml" and parallel:
        return (f"{p}parallel: x-maml draws support and query from one language, so they cannot be translations "
                f"of each other; expected {p}parallel=false")
    if parallel and k != n:
        return (f"{p}n: parallel episodes pair each support example with its translation, so {p}k and {p}n must be "
                f"equal; expected n == k, got k={k}, n={n}")
    return language_rule_error(method, support_langs, query_langs, prefix)


def language_rule_error(method: str, support_langs: Sequence[str], query_langs: Sequence[str],
                        prefix: str = "") -> str | None:
    """Return why xla-maml cannot pair some query language with a different support language, or None."""
    if method != "xla-maml":
        return None
    p = prefix
    for lq in query_langs:
        if not [ls for ls in support_langs if ls != lq]:
            return (f"{p}support_langs: query language {lq!r} has no support language other than itself "
                    f"({p}query_langs: xla-maml needs query languages that differ from {p}support_langs; "
                    f"expected one that differs, or method x-maml for same-language episodes)")
    return None


def aux_langs(method: str, support_langs: Sequence[str], query_langs: Sequence[str]) -> list[str]:
    """Return the auxiliary languages of a run: those its meta stage saw, less the English source language."""
    if method == "baseline":
        return []
    # x-maml draws both sides from the query languages; English is the English stage's own language, so (as
    # in the paper's Table 3) it is reported and averaged like any target.
    seen = set(query_langs) if method == "x-maml" else set(support_langs) | set(query_langs)
    return sorted(seen - {"en"})
