"""Episode sampling for the meta stage (paper section 3.1; sampling 5.2, parallelism 5.3).

An episode is a support set of K and a query set of N (language, row) pairs. Input is, per language,
the example uids in row order; a uid is the parallel key (the same uid in two languages is the same
example translated), so a language's uids must be unique.

- ``xla-maml``: the query language l_q comes from ``query_langs``, the support language l_s from
  ``support_langs`` minus {l_q}; the few-shot variant is ``support_langs=[target]``.
- ``x-maml``: support and query both come from one language of ``query_langs``, with disjoint uids.
- ``random``: every episode is a fresh draw (no repeats within an episode).
- ``cover``: each query language is walked in shuffled passes, every example once per pass.
  l_q goes round-robin over ``query_langs``.
- ``parallel`` (xla-maml only, K == N): the support is the translation of the query in l_s, in the
  same order. The query pool of l_q is then the uids it shares with *every* support language it can
  be paired with, so any l_s drawn holds the translations. With one support language (en -> hi,
  a -> b, few-shot) that is simply the uids l_q and l_s share.
- not ``parallel``: no uid of the query appears in the support.

Cover rules (``_Pass.take``):
- Pass tail: when fewer rows are left in a pass than an episode needs, the episode takes the rest
  and completes from the next shuffled pass, skipping rows it already holds (those rows are deferred
  to later episodes of the new pass). Every row is thus used exactly once per pass, and the query
  rows of a language, read episode after episode, are consecutive permutations of its pool.
- Collisions: a row that may not join the episode (in non-parallel xla-maml, a support row whose
  uid is among the episode's query uids) is skipped and stays at the front of its pass: deferred,
  not lost, so the support side covers its language too (a deferred row may be used just after
  the next pass has begun). A row owed twice when a pass runs out is owed once: that keeps the
  state under two passes and only matters when K nearly equals the support rows usable beside a
  query. Only support passes see collisions, so the query side is always an exact cover.
- ``x-maml`` ignores ``support_langs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from xlamaml.trainables.errors import InputError
from xlamaml.trainables.methods import META_METHODS, SAMPLING, episode_rule_error


@dataclass(frozen=True)
class Episode:
    """One meta task: K support and N query (language, row) pairs."""

    support: list[tuple[str, int]]
    query: list[tuple[str, int]]


@dataclass
class _Pass:
    """A walk over `pool` in shuffled passes; the rows not used yet are order[cursor:]."""

    pool: list[int]
    order: list[int] = field(default_factory=list)
    cursor: int = 0
    passes: int = 0  # shuffles drawn so far

    def take(self, n: int, rng: np.random.Generator, uid_of: list[str], avoid: set[str]) -> list[int]:
        """Return the next n rows whose uids are not in `avoid` and differ from each other."""
        avoid = set(avoid)
        out: list[int] = []
        i, shuffles = self.cursor, 0
        while len(out) < n:
            if i == len(self.order):
                # Pass exhausted: a fresh shuffled pass goes behind the rows still left (skipped, so
                # deferred), which thus come first. A row left twice is kept once: that bounds the state
                # by two passes and only bites when K is close to the rows usable beside a query.
                shuffles += 1
                if shuffles > 1:  # the constructor's size checks make this unreachable
                    raise RuntimeError("episode sampler: a fresh pass could not fill one episode")
                left = list(dict.fromkeys(self.order[self.cursor:]))
                i = len(left)  # all of `left` was scanned and skipped already
                self.order, self.cursor = left + rng.permutation(self.pool).tolist(), 0
                self.passes += 1
            row = self.order[i]
            if uid_of[row] not in avoid:
                # Swap the row to the front of the unused part; the skipped rows stay unused (deferred).
                self.order[i], self.order[self.cursor] = self.order[self.cursor], row
                self.cursor += 1
                out.append(row)
                avoid.add(uid_of[row])
            i += 1
        return out


class EpisodeSampler:
    """Support/query episodes over per-language uid lists, random or covering, parallel or not."""

    def __init__(self, uids: dict[str, list[str]], *, method: str, support_langs: list[str],
                 query_langs: list[str], k: int, n: int, sampling: str = "cover",
                 parallel: bool = True, seed: int = 0):
        if method not in META_METHODS:
            raise InputError(f"method: expected one of {', '.join(META_METHODS)}, got {method!r}")
        if sampling not in SAMPLING:
            raise InputError(f"sampling: expected one of {', '.join(SAMPLING)}, got {sampling!r}")
        for name, value in (("k", k), ("n", n)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name}: expected an integer >= 1, got {value!r}")
        problem = episode_rule_error(method, support_langs, query_langs, k, n, parallel)
        if problem:
            raise InputError(problem)
        for name, langs in (("query_langs", query_langs), ("support_langs", support_langs)):
            if method == "x-maml" and name == "support_langs":
                continue  # x-maml takes both sides from the query languages
            if not langs:
                raise InputError(f"{name}: expected at least one language, got none")
            for lang in langs:
                if lang not in uids:
                    raise InputError(f"{name}: language {lang!r} has no data; expected one of "
                                     f"{' '.join(sorted(uids))}")
            if len(set(langs)) != len(langs):
                raise InputError(f"{name}: expected each language once, got {list(langs)}")

        self.method, self.sampling, self.parallel = method, sampling, parallel
        self.k, self.n = int(k), int(n)
        self.query_langs = list(query_langs)
        self.support_langs = list(support_langs) if method == "xla-maml" else []
        used = sorted(set(self.query_langs) | set(self.support_langs))
        self.uids = {lang: list(uids[lang]) for lang in used}
        self.row_of = {lang: {u: r for r, u in enumerate(us)} for lang, us in self.uids.items()}
        for lang in used:
            if len(self.row_of[lang]) != len(self.uids[lang]):
                raise InputError(f"uids: language {lang!r} repeats a uid; expected one row per uid")

        # Valid support languages of each query language (xla-maml needs l_s != l_q: episode_rule_error
        # checked above that every query language has one).
        self.partners: dict[str, list[str]] = {}
        if method == "xla-maml":
            for lq in self.query_langs:
                self.partners[lq] = [ls for ls in self.support_langs if ls != lq]

        # The query-side pool of each query language: rows of l_q (parallel: those with translations).
        self.pool: dict[str, list[int]] = {}
        for lq in self.query_langs:
            rows = range(len(self.uids[lq]))
            if parallel:
                rows = [r for r in rows if all(self.uids[lq][r] in self.row_of[ls] for ls in self.partners[lq])]
            self.pool[lq] = list(rows)
        self._check_sizes()

        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.rr = 0  # round-robin position over query_langs (cover)
        self.drawn = {lq: 0 for lq in self.query_langs}  # query-side examples drawn, for passes()
        self.streams: dict[str, _Pass] = {}
        if sampling == "cover":
            for lq in self.query_langs:
                self.streams[f"query/{lq}"] = _Pass(self.pool[lq])
            if method == "xla-maml" and not parallel:
                for ls in self.support_langs:
                    self.streams[f"support/{ls}"] = _Pass(list(range(len(self.uids[ls]))))

    def _check_sizes(self) -> None:
        """Return None once every language holds enough examples for one episode (ValueError if not)."""
        for lq in self.query_langs:
            need = self.k + self.n if self.method == "x-maml" else self.n
            what = "shared with its support languages" if self.parallel else "in total"
            if len(self.pool[lq]) < need:
                raise InputError(f"uids: query language {lq!r} has {len(self.pool[lq])} examples {what}; "
                                 f"expected at least {need} for one episode")
            if self.method == "xla-maml" and not self.parallel:
                for ls in self.partners[lq]:
                    # At worst every query uid also names a support example, which then may not be used.
                    shared = len(set(self.uids[lq]) & self.row_of[ls].keys())
                    usable = len(self.uids[ls]) - min(self.n, shared)
                    if usable < self.k:
                        raise InputError(f"uids: support language {ls!r} has {usable} examples usable beside "
                                         f"a {lq!r} query; expected at least k={self.k}")

    def _pick(self, langs: list[str]) -> str:
        """Return one of `langs`, drawn with the sampler's rng when there is a choice."""
        return langs[0] if len(langs) == 1 else langs[int(self.rng.integers(len(langs)))]

    def _draw(self, lang: str, pool: Sequence[int], count: int, avoid: set[str], stream: str) -> list[int]:
        """Return `count` rows of `lang` from `pool` (or its cover stream), none with a uid in `avoid`."""
        if self.sampling == "cover":
            return self.streams[stream].take(count, self.rng, self.uids[lang], avoid)
        allowed = [r for r in pool if self.uids[lang][r] not in avoid] if avoid else pool
        return [allowed[i] for i in self.rng.choice(len(allowed), size=count, replace=False).tolist()]

    def next(self) -> Episode:
        """Return the next episode."""
        if self.sampling == "cover":
            lq = self.query_langs[self.rr % len(self.query_langs)]
            self.rr += 1
        else:
            lq = self._pick(self.query_langs)
        uid_q = self.uids[lq]
        if self.method == "x-maml":
            # One draw of K+N, so under cover both sides come consecutively from the same pass.
            rows = self._draw(lq, self.pool[lq], self.k + self.n, set(), f"query/{lq}")
            self.drawn[lq] += len(rows)
            return Episode([(lq, r) for r in rows[:self.k]], [(lq, r) for r in rows[self.k:]])
        ls = self._pick(self.partners[lq])
        query = self._draw(lq, self.pool[lq], self.n, set(), f"query/{lq}")
        self.drawn[lq] += len(query)
        if self.parallel:
            support = [self.row_of[ls][uid_q[r]] for r in query]
        else:
            avoid = {uid_q[r] for r in query}  # no translation of a query example in the support
            support = self._draw(ls, range(len(self.uids[ls])), self.k, avoid, f"support/{ls}")
        return Episode([(ls, r) for r in support], [(lq, r) for r in query])

    def __iter__(self) -> Iterator[Episode]:
        """Return self: the sampler is an endless iterator of episodes."""
        return self

    def __next__(self) -> Episode:
        """Return the next episode."""
        return self.next()

    def episodes_per_pass(self, lang: str) -> int:
        """Return how many episodes of query language `lang` one pass over its pool takes (rounded up)."""
        per = self.k + self.n if self.method == "x-maml" else self.n
        return math.ceil(len(self._query_pool(lang)) / per)

    def passes(self, lang: str) -> int:
        """Return how many full passes over `lang`'s query pool were drawn (under random: pools' worth)."""
        size = len(self._query_pool(lang))  # first, so an unknown language is a ValueError
        return self.drawn[lang] // size

    def _query_pool(self, lang: str) -> list[int]:
        """Return the query pool of `lang` (ValueError if it is not a query language)."""
        if lang not in self.pool:
            raise InputError(f"lang: expected one of the query languages {' '.join(self.query_langs)}, "
                             f"got {lang!r}")
        return self.pool[lang]

    def _setup(self) -> dict:
        """Return what a saved state must agree with to be loaded into this sampler."""
        return {"method": self.method, "sampling": self.sampling, "parallel": self.parallel,
                "k": self.k, "n": self.n, "support_langs": self.support_langs,
                "query_langs": self.query_langs, "pool_sizes": {l: len(p) for l, p in self.pool.items()}}

    def state_dict(self) -> dict:
        """Return the sampler's position as plain JSON-ready values (rng, passes, cursors, round-robin)."""
        bg = self.rng.bit_generator.state
        return {
            "setup": self._setup(),
            # PCG64's 128-bit integers go as strings, safe for any JSON reader.
            "rng": {"state": str(bg["state"]["state"]), "inc": str(bg["state"]["inc"]),
                    "has_uint32": int(bg["has_uint32"]), "uinteger": int(bg["uinteger"])},
            "rr": self.rr,
            "drawn": dict(self.drawn),
            "streams": {name: {"order": list(s.order), "cursor": s.cursor, "passes": s.passes}
                        for name, s in self.streams.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Return None after restoring a `state_dict()` (ValueError if saved by a different setup)."""
        if state["setup"] != self._setup():
            raise InputError(f"state: saved by a sampler with setup {state['setup']}; expected {self._setup()}")
        rng = state["rng"]
        self.rng.bit_generator.state = {
            "bit_generator": "PCG64", "state": {"state": int(rng["state"]), "inc": int(rng["inc"])},
            "has_uint32": rng["has_uint32"], "uinteger": rng["uinteger"]}
        self.rr = state["rr"]
        self.drawn = dict(state["drawn"])
        for name, s in state["streams"].items():
            stream = self.streams[name]
            stream.order, stream.cursor, stream.passes = list(s["order"]), s["cursor"], s["passes"]
