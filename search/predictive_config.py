"""`sweep.predictive.*`: the predictive search's knobs (search/predictive/search.py says what each does), parsed
and checked with the rest of the sweep's config (search/spec.py), as search/schedule.py does for the adaptive mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from xlamaml.search.schedule import increasing_fractions
from xlamaml.trainables.config_parsing import check_fields, checked, non_negative, positive_int


def _share(v: float) -> str | None:
    return None if isinstance(v, (int, float)) and 0 < v <= 1 else "expected a fraction in (0, 1]"


def _repeats(v: list) -> str | None:
    ok = isinstance(v, list) and v and all(isinstance(x, int) and x >= 1 for x in v)
    return None if ok else "expected a non-empty list of positive integers"


@dataclass(frozen=True)
class PredictiveConfig:
    """`sweep.predictive.*`: the predictive search's knobs (see the module docstring). The defaults were set on the
    recorded maps' replays (benchmarks/replay.py), after a few variants on those same maps."""

    init_share: float = checked(0.2, rule=_share)  # of the cells, run first (one seed each, full budget)
    # Fractions of the meta steps a run may stop at (dev scored at each on the way: the learning curve).
    fractions: list[float] = checked(default_factory=lambda: [0.25, 1.0], rule=increasing_fractions)
    min_value: float = checked(0.01, rule=non_negative)  # points of expected gain per full trial's seconds
    refit_iterations: int = checked(3, rule=positive_int)  # EM iterations of a warm refit (variances move little)
    batch: int = checked(2, rule=positive_int)  # runs chosen per refit: a round of trials run at once
    side: bool = True  # URIEL+ distances of the target to the cell's languages as covariates
    repeats: list[int] = checked(default_factory=lambda: [1, 2, 4], rule=_repeats)  # KG(*): best share of m runs
    # Stop before the runs pass this share of the grid's compute (estimated; the picks' test comes on top).
    max_share: float = checked(1.0, rule=_share)

    def validate(self, prefix: str = "sweep.predictive.") -> "PredictiveConfig":
        """Return self after checking its values; raise ConfigError naming the key."""
        check_fields(self, prefix)
        return self
