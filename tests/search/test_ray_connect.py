"""Connecting to Ray: a wrong address is one line within seconds; a stale cluster file never captures a local sweep."""

import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from xlamaml.search.ray_connect import RayConnectError, check_reachable, init_ray


def dead_port() -> int:
    """Return a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_address_is_one_line_naming_it_within_seconds():
    address = f"127.0.0.1:{dead_port()}"
    t0 = time.perf_counter()
    with pytest.raises(RayConnectError, match=f"^--address {address}: no Ray cluster answers there") as err:
        init_ray(address)
    assert time.perf_counter() - t0 < 10 and "\n" not in str(err.value)
    with pytest.raises(RayConnectError, match="expected HOST:PORT"):
        check_reachable("not-an-address")


def test_auto_with_a_stale_cluster_file_names_the_address(tmp_path, monkeypatch):
    address = f"127.0.0.1:{dead_port()}"
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(address)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(RayConnectError, match=f"--address auto \\({address}\\): no Ray cluster answers"):
        init_ray("auto")
    (tmp_path / "ray" / "ray_current_cluster").unlink()
    with pytest.raises(RayConnectError, match="no Ray cluster was started on this machine"):
        init_ray("auto")


def test_a_stale_cluster_file_does_not_capture_a_local_sweep(tmp_path, cache):
    """A dead cluster in ray_current_cluster used to make a local sweep hang for over 11 minutes (about 40 s now)."""
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    try:
        os.makedirs(f"{ray_tmp}/ray")
        with open(f"{ray_tmp}/ray/ray_current_cluster", "w") as f:
            f.write(f"127.0.0.1:{dead_port()}")
        env = {**os.environ, "RAY_TMPDIR": ray_tmp}
        env.pop("RAY_ADDRESS", None)
        proc = subprocess.Popen([sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--config", "smoke",
                                 "--set", "sweep.assignments.items=[baseline]", "--storage", str(tmp_path / "runs"),
                                 "--name", "local"], env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            _, err = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        assert proc.returncode == 0, err[-2000:]
        assert (tmp_path / "runs" / "local" / "xlamaml_sweep.json").is_file()
    finally:
        subprocess.run(["rm", "-rf", ray_tmp], check=False)
