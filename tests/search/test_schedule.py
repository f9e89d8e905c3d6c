"""The adaptive sweep's rung schedule (`search.rungs`): the defaults' counts on a pairs map and an en -> aux map."""

from xlamaml.search.schedule import AdaptiveConfig, keep_count, keep_ratio, schedule


def counts(cells: int, targets: int, a: AdaptiveConfig | None = None) -> list[int]:
    """Return the cells entering each rung of the default schedule."""
    a = (a or AdaptiveConfig()).validate()
    return [r.cells for r in schedule(a, cells, total_steps=500, dev_max=500, seeds=[1, 2, 3],
                                      targets=targets)]


def test_default_schedule_on_pairs_and_en_aux_maps():
    assert counts(225, 15) == [225, 90, 36]  # the keep ratio alone
    assert counts(14, 15) == [14, 10, 7]  # per_target x targets cells at the end, the cuts spread evenly
    assert counts(14, 0) == [14, 6, 3]  # without targets: the ratio alone
    rungs = schedule(AdaptiveConfig(), 225, total_steps=500, dev_max=500, seeds=[1, 2, 3])
    assert [(r.steps, r.dev_items, r.seeds) for r in rungs] == [(50, 500, (1,)), (250, 500, (1, 2)),
                                                                (500, 500, (1, 2, 3))]


def test_keep_count_and_ratio():
    assert keep_count(225, 0.4, 2) == 90 and keep_count(3, 0.1, 2) == 2 and keep_count(1, 0.1, 2) == 1
    assert keep_ratio(AdaptiveConfig(), 225, 15) == 0.4
    assert abs(keep_ratio(AdaptiveConfig(), 14, 15) - (6 / 14) ** 0.5) < 1e-12
