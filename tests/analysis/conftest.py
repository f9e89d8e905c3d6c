"""Fixtures: the synthetic experiment directory and its tidy table."""

from pathlib import Path

import pandas as pd
import pytest

from xlamaml.analysis.results import load_results
from tests.analysis.synthetic import make_experiment


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    """The synthetic experiment of tests/analysis/synthetic.py."""
    return make_experiment(tmp_path / "exp")


@pytest.fixture
def df(exp: Path) -> pd.DataFrame:
    """Its tidy table."""
    return load_results(exp)
