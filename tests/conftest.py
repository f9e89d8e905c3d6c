"""Shared fixtures: tiny fixed-init models and the shared data folder; nothing touches the network."""

import os

import pytest

# Any hub call fails at once instead of hanging on a closed network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from trainables.paths import default_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The shared real data (XNLI, MLQA)."""
    path = default_data_dir()
    if not os.path.isdir(os.path.join(path, "xnli")):
        pytest.fail(f"shared data not found at {path}; set XLAMAML_DATA_DIR")
    return path
