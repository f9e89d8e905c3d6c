"""The episode sampler: languages, sizes, parallelism, cover passes, determinism, checkpoints, errors."""

import json
from collections import Counter

import pytest

from xlamaml.trainables.episodes import Episode, EpisodeSampler

LANGS = ("en", "hi", "de")
P = 50  # examples per language; not a multiple of the episode sizes used below


def parallel_uids(size: int = P) -> dict[str, list[str]]:
    """Return XNLI-like uids: every language holds the same uids, each language in its own row order."""
    base = [f"u{i}" for i in range(size)]
    return {lang: base[j:] + base[:j] for j, lang in enumerate(LANGS)}  # row != uid index on purpose


def partial_uids() -> dict[str, list[str]]:
    """Return MLQA-like uids: en u0..u49, hi u20..u69 (shares u20..u49), de u0..u9 + u40..u79."""
    return {"en": [f"u{i}" for i in range(50)],
            "hi": [f"u{i}" for i in range(69, 19, -1)],
            "de": [f"u{i}" for i in list(range(10)) + list(range(40, 80))]}


def make(uids=None, **kw) -> EpisodeSampler:
    """Return a sampler with test defaults (en -> hi, K = N = 8, cover, parallel)."""
    args = dict(method="xla-maml", support_langs=["en"], query_langs=["hi"], k=8, n=8,
                sampling="cover", parallel=True, seed=0)
    args.update(kw)
    return EpisodeSampler(uids or parallel_uids(), **args)


def uid_list(uids, pairs):
    """Return the uids of (lang, row) pairs."""
    return [uids[lang][row] for lang, row in pairs]


def query_rows(sampler, episodes: int, lang: str) -> list[int]:
    """Return the query rows of `lang` over the next `episodes` episodes, checking none repeats in one."""
    rows = []
    for _ in range(episodes):
        ep = sampler.next()
        assert len(set(ep.query)) == len(ep.query) and len(set(ep.support)) == len(ep.support)
        rows += [r for l, r in ep.query if l == lang]
    return rows


# --- languages and sizes ---------------------------------------------------------------------------

def test_xla_maml_languages_and_sizes():
    s = make(support_langs=["en", "de"], query_langs=["hi"], k=5, n=7, parallel=False, sampling="random")
    seen = set()
    for ep in (s.next() for _ in range(60)):
        assert isinstance(ep, Episode) and len(ep.support) == 5 and len(ep.query) == 7
        assert {l for l, _ in ep.query} == {"hi"}
        (ls,) = {l for l, _ in ep.support}
        seen.add(ls)
        assert len(set(ep.support)) == 5 and len(set(ep.query)) == 7
    assert seen == {"en", "de"}  # the support language is drawn among the valid ones


def test_xla_maml_overlapping_sets_never_pair_a_language_with_itself():
    for sampling in ("cover", "random"):
        s = make(support_langs=["hi", "de"], query_langs=["hi", "de"], sampling=sampling)
        for ep in (s.next() for _ in range(40)):
            (ls,), (lq,) = {l for l, _ in ep.support}, {l for l, _ in ep.query}
            assert {ls, lq} == {"hi", "de"}


def test_cover_round_robin_over_query_langs():
    s = make(query_langs=["hi", "de"])
    assert [s.next().query[0][0] for _ in range(6)] == ["hi", "de"] * 3


def test_random_query_language_is_drawn():
    s = make(query_langs=["hi", "de"], sampling="random")
    counts = Counter(s.next().query[0][0] for _ in range(200))
    assert set(counts) == {"hi", "de"} and min(counts.values()) > 60
    assert [s.next().query[0][0] for _ in range(20)] != ["hi", "de"] * 10


def test_few_shot_variant_target_supports_auxiliary_queries():
    # Few-shot: support = the target's dev data, query = the auxiliary languages.
    uids = parallel_uids()
    for parallel in (True, False):
        s = make(uids, support_langs=["hi"], query_langs=["en", "de"], parallel=parallel)
        for ep in (s.next() for _ in range(20)):
            assert {l for l, _ in ep.support} == {"hi"}
            assert {l for l, _ in ep.query} <= {"en", "de"} and len({l for l, _ in ep.query}) == 1
            if parallel:
                assert uid_list(uids, ep.support) == uid_list(uids, ep.query)


# --- parallelism -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sampling", ["cover", "random"])
def test_parallel_support_is_the_query_translated_in_order(sampling):
    uids = parallel_uids()
    s = make(uids, sampling=sampling)
    for ep in (s.next() for _ in range(30)):
        assert uid_list(uids, ep.support) == uid_list(uids, ep.query)
        assert ep.support != [("en", r) for _, r in ep.query]  # rows differ: the uid is the key, not the row


@pytest.mark.parametrize("sampling", ["cover", "random"])
def test_non_parallel_support_and_query_uids_are_disjoint(sampling):
    uids = parallel_uids()
    s = make(uids, sampling=sampling, parallel=False, k=6, n=10)
    for ep in (s.next() for _ in range(60)):
        assert not set(uid_list(uids, ep.support)) & set(uid_list(uids, ep.query))


@pytest.mark.parametrize("sampling", ["cover", "random"])
def test_x_maml_same_language_disjoint_examples(sampling):
    uids = parallel_uids()
    s = make(uids, method="x-maml", query_langs=["hi", "de"], parallel=False, k=4, n=6, sampling=sampling)
    for ep in (s.next() for _ in range(60)):
        assert len(ep.support) == 4 and len(ep.query) == 6
        assert len({l for l, _ in ep.support + ep.query}) == 1 and ep.query[0][0] in {"hi", "de"}
        assert not set(ep.support) & set(ep.query)
        assert not set(uid_list(uids, ep.support)) & set(uid_list(uids, ep.query))


@pytest.mark.parametrize("sampling", ["cover", "random"])
def test_partial_parallelism_uses_only_shared_uids(sampling):
    uids = partial_uids()
    s = make(uids, k=4, n=4, sampling=sampling)
    shared = set(uids["en"]) & set(uids["hi"])
    used = set()
    for ep in (s.next() for _ in range(40)):
        assert uid_list(uids, ep.support) == uid_list(uids, ep.query)
        used |= set(uid_list(uids, ep.query))
    assert used <= shared
    if sampling == "cover":
        assert used == shared and s.episodes_per_pass("hi") == 8  # 30 shared uids / 4, rounded up


def test_partial_parallelism_with_two_support_langs_uses_uids_all_of_them_hold():
    uids = partial_uids()
    s = make(uids, support_langs=["en", "de"], k=3, n=3)
    common = set(uids["hi"]) & set(uids["en"]) & set(uids["de"])  # u40..u49
    for ep in (s.next() for _ in range(30)):
        assert set(uid_list(uids, ep.query)) <= common
        assert uid_list(uids, ep.support) == uid_list(uids, ep.query)


def test_partial_non_parallel_draws_from_each_full_language():
    uids = partial_uids()
    s = make(uids, parallel=False, k=10, n=10)
    q, sup = set(), set()
    for ep in (s.next() for _ in range(20)):
        q |= set(uid_list(uids, ep.query))
        sup |= set(uid_list(uids, ep.support))
    assert q == set(uids["hi"]) and sup == set(uids["en"])


# --- cover and random ------------------------------------------------------------------------------

def assert_consecutive_passes(rows: list[int], pool: set[int]) -> None:
    """Assert that `rows` in blocks of len(pool) are permutations of `pool` (a last, partial block: distinct)."""
    size = len(pool)
    for start in range(0, len(rows), size):
        block = rows[start:start + size]
        assert len(set(block)) == len(block) and set(block) <= pool
    assert len(rows) >= size


@pytest.mark.parametrize("n", [8, 10])  # 50 % 8 != 0 (tail rule), 50 % 10 == 0
@pytest.mark.parametrize("parallel", [True, False])
def test_cover_uses_every_query_example_once_per_pass(n, parallel):
    s = make(k=n, n=n, parallel=parallel)
    per_pass = s.episodes_per_pass("hi")
    assert per_pass == -(-P // n)
    # Exactly one pass worth of episodes sees every example, and the first P rows are one permutation.
    first = query_rows(s, per_pass, "hi")
    assert set(first) == set(range(P)) and sorted(first[:P]) == list(range(P))
    # Read on over several passes: each block of P consecutive query rows is a permutation.
    rows = first + query_rows(s, 7 * per_pass, "hi")
    assert_consecutive_passes(rows, set(range(P)))
    assert s.passes("hi") == len(rows) // P


def test_cover_with_two_query_langs_covers_each():
    s = make(query_langs=["hi", "de"], k=7, n=7)
    eps = [s.next() for _ in range(2 * 3 * s.episodes_per_pass("hi"))]
    for lang in ("hi", "de"):
        rows = [r for ep in eps for l, r in ep.query if l == lang]
        assert_consecutive_passes(rows, set(range(P)))
        assert s.passes(lang) == 3 * 8 * 7 // P


def test_x_maml_cover_walks_support_and_query_through_one_pass():
    s = make(method="x-maml", parallel=False, k=3, n=4)  # 7 per episode, 50 % 7 != 0
    rows = []
    for _ in range(5 * s.episodes_per_pass("hi")):
        ep = s.next()
        rows += [r for _, r in ep.support] + [r for _, r in ep.query]
    assert_consecutive_passes(rows, set(range(P)))
    assert s.episodes_per_pass("hi") == 8 and s.passes("hi") == len(rows) // P


def test_non_parallel_cover_support_side_also_covers():
    # Support rows whose uid collides with the query are deferred, not lost: counts stay balanced.
    s = make(parallel=False, k=9, n=8)
    counts = Counter()
    for _ in range(300):  # 54 passes of the support pool: a lost row would fall further behind each time
        ep = s.next()
        assert len(set(ep.support)) == 9
        counts.update(r for _, r in ep.support)
        assert max(counts.values()) - min(counts.values()) <= 2
    assert set(counts) == set(range(P))


def test_random_is_not_a_cover():
    # 10 episodes of 5 draw 50 rows from a pool of 50: all distinct has probability ~3e-21 per seed.
    for seed in range(5):
        s = make(sampling="random", k=5, n=5, seed=seed)
        rows = query_rows(s, P // 5, "hi")
        assert len(set(rows)) < len(rows)
    s = make(sampling="random", k=5, n=5)
    assert s.passes("hi") == 0
    query_rows(s, 25, "hi")
    assert s.passes("hi") == 2  # 125 drawn from 50: two pools' worth


# --- determinism and checkpoints -------------------------------------------------------------------

CONFIGS = [
    dict(),
    dict(parallel=False, k=6, n=9, support_langs=["en", "de"], query_langs=["hi", "de"]),
    dict(method="x-maml", parallel=False, query_langs=["hi", "de"], k=3, n=4),
    dict(sampling="random", query_langs=["hi", "de"]),
    dict(sampling="random", parallel=False, support_langs=["en", "de"], k=4, n=5),
]


@pytest.mark.parametrize("kw", CONFIGS)
def test_same_seed_same_episodes_other_seed_differs(kw):
    a, b, c = make(seed=3, **kw), make(seed=3, **kw), make(seed=4, **kw)
    ea, eb, ec = ([x.next() for _ in range(40)] for x in (a, b, c))
    assert ea == eb
    assert ea != ec


@pytest.mark.parametrize("kw", CONFIGS)
@pytest.mark.parametrize("at", [3, 17])  # mid-pass, and just past a pass boundary
def test_state_dict_through_json_resumes_identically(kw, at):
    s1 = make(seed=7, **kw)
    for _ in range(at):
        s1.next()
    state = json.loads(json.dumps(s1.state_dict()))
    s2 = make(seed=99, **kw)  # another seed: everything must come from the state
    s2.load_state_dict(state)
    assert [s2.next() for _ in range(50)] == [s1.next() for _ in range(50)]
    assert s2.state_dict() == s1.state_dict()


def test_load_state_dict_rejects_another_setup():
    state = make().state_dict()
    with pytest.raises(ValueError, match=r"^state: saved by a sampler with setup"):
        make(k=4, n=4).load_state_dict(state)


def test_iterator_protocol():
    a, b = make(), make()
    it = iter(a)
    assert it is a and [next(it) for _ in range(5)] == [b.next() for _ in range(5)]


# --- validation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, message", [
    (dict(method="baseline"), r"^method: expected one of xla-maml, x-maml, got 'baseline'$"),
    (dict(sampling="shuffle"), r"^sampling: expected one of random, cover, got 'shuffle'$"),
    (dict(k=0, n=0), r"^k: expected an integer >= 1, got 0$"),
    (dict(n=0, parallel=False), r"^n: expected an integer >= 1, got 0$"),
    (dict(method="x-maml"), r"^parallel: x-maml draws support and query from one language"),
    (dict(k=4, n=8), r"^n: parallel episodes pair .* expected n == k, got k=4, n=8$"),
    (dict(query_langs=["sw"]), r"^query_langs: language 'sw' has no data; expected one of de en hi$"),
    (dict(support_langs=["fr"]), r"^support_langs: language 'fr' has no data"),
    (dict(query_langs=[]), r"^query_langs: expected at least one language, got none$"),
    (dict(query_langs=["hi", "hi"]), r"^query_langs: expected each language once"),
    (dict(support_langs=["hi"]), r"^support_langs: query language 'hi' has no support language other"),
    (dict(k=51, n=51), r"^uids: query language 'hi' has 50 examples shared .* expected at least 51"),
    (dict(method="x-maml", parallel=False, k=25, n=26),
     r"^uids: query language 'hi' has 50 examples in total; expected at least 51 for one episode$"),
    (dict(parallel=False, k=43, n=8),
     r"^uids: support language 'en' has 42 examples usable beside a 'hi' query; expected at least k=43$"),
])
def test_validation_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        make(**kw)


def test_validation_partial_and_repeated_uids():
    with pytest.raises(ValueError, match=r"^uids: query language 'hi' has 30 examples shared"):
        make(partial_uids(), k=31, n=31)
    bad = parallel_uids()
    bad["en"][3] = bad["en"][4]
    with pytest.raises(ValueError, match=r"^uids: language 'en' repeats a uid; expected one row per uid$"):
        make(bad)
    with pytest.raises(ValueError, match=r"^lang: expected one of the query languages hi, got 'en'$"):
        make().passes("en")
