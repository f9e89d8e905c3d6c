"""Shared fixtures: tiny fixed-init models and the shared data folder; nothing touches the network."""

import os

# numpy's BLAS on small matrices (the map model, the simulators): its threads only contend with torch's and with
# each other on 2 cores (10x slower measured). Set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Any hub call fails at once instead of hanging on a closed network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from xlamaml.trainables.paths import default_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> str:
    """The shared real data (XNLI, MLQA)."""
    path = default_data_dir()
    if not os.path.isdir(os.path.join(path, "xnli")):
        pytest.fail(f"shared data not found at {path}; set XLAMAML_DATA_DIR")
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh xlamaml cache folder (English stages, converted models) for one test."""
    monkeypatch.setenv("XLAMAML_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one torch thread: on 2 cores, two threads beside other work are ~50x slower."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray of 2 CPUs for one test module's sweeps (its driver's logs kept off the console)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
