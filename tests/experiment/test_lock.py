"""One sweep per experiment at a time: the lease file, its owner, a stale or dead owner's lease taken over by a
resume, and two drivers that start together."""

import json
import threading
import time

import pytest

from xlamaml.experiment import lock


def test_a_second_driver_is_refused_naming_the_owner(tmp_path):
    exp = str(tmp_path / "exp")
    held = lock.acquire(exp, resume=False, settle=0)
    with pytest.raises(lock.ExperimentLocked, match=r"a sweep is running here \(.* pid \d+"):
        lock.acquire(exp, resume=True, settle=0)
    held.release()
    assert lock.read_lease(exp) is None
    lock.acquire(exp, resume=True, settle=0).release()


def test_a_stale_lease_is_taken_over_by_a_resume_only(tmp_path, caplog):
    exp = tmp_path / "exp"
    exp.mkdir()
    stale = {"owner": "someone@elsewhere pid 1", "host": "elsewhere", "pid": 1, "token": "x",
             "heartbeat": time.time() - lock.STALE_S - 1}
    (exp / lock.LOCK_FILE).write_text(json.dumps(stale))
    with pytest.raises(lock.ExperimentLocked, match="someone@elsewhere.*continue it with --resume"):
        lock.acquire(str(exp), resume=False, settle=0)
    with caplog.at_level("WARNING", logger="xlamaml"):
        lock.acquire(str(exp), resume=True, settle=0).release()
    assert any("taking over the lease of someone@elsewhere" in r.getMessage() for r in caplog.records)


def test_a_killed_local_drivers_lease_need_not_go_stale(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    dead = {"owner": "me", "host": lock.socket.gethostname(), "pid": 2**22 + 12345, "token": "x",
            "heartbeat": time.time()}
    (exp / lock.LOCK_FILE).write_text(json.dumps(dead))
    lock.acquire(str(exp), resume=True, settle=0).release()


def test_two_drivers_starting_together_one_wins(tmp_path):
    exp = str(tmp_path / "exp")
    start, won, lost = threading.Barrier(2), [], []

    def driver():
        start.wait()
        try:
            won.append(lock.acquire(exp, resume=False, settle=0.5))
        except lock.ExperimentLocked as e:
            lost.append(str(e))

    threads = [threading.Thread(target=driver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 1 and "expected one driver per experiment" in lost[0]
    won[0].release()
