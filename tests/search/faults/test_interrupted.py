"""Ctrl-C (SIGINT) or SIGTERM during a sweep: exit 130 / 143 with one line giving the exact resume command, the state
saved, no adaptive decision on a cut rung, and the resume finishes every trial once."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xlamaml.search.faults.interrupted import Interrupted, watching_signals


def reports(folder: Path) -> list[dict]:
    """Return the whole reports of a trial folder's result.json."""
    path = folder / "result.json"
    out = []
    for line in (path.read_text().splitlines() if path.is_file() else []):
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def test_a_signal_outside_tune_stops_at_once_and_inside_asks_tune_to_stop():
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
    # Run in the background, a process may start with SIGINT ignored: this test needs it handled.
    before = {s: signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
              for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with watching_signals() as watch:
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.1)
            watch.received.clear()
            with watch.tuning_run():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)
            assert seen == [signal.SIGUSR1]  # Tune's graceful stop
            with pytest.raises(Interrupted, match=r"interrupted \(SIGTERM\).*resume with `xlamaml sweep --resume"):
                watch.check("exp", "xlamaml sweep --resume --name n --storage s")
            try:
                watch.check("exp", "cmd")
            except Interrupted as e:
                assert e.exit_status == 143
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGUSR1, previous)
        for s, handler in before.items():
            signal.signal(s, handler)


def interrupt(cmd: list[str], exp: Path, signum: int, ready) -> subprocess.CompletedProcess:
    """Run the sweep `cmd`, send `signum` to the driver once `ready(exp)`, and return how it ended."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A test run in the background starts its children with SIGINT ignored (and a sweep keeps an ignored signal
    # ignored, as nohup expects): this one is a foreground Ctrl-C.
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if exp.is_dir() and ready(exp):
                break
            time.sleep(0.3)
        else:
            pytest.fail("the sweep never got far enough to be interrupted")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=240)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def a_meta_trial_checkpointed(exp: Path) -> bool:
    """Return whether a meta trial of `exp` has a checkpoint but no final report yet."""
    return any(list(t.glob("checkpoint_*")) and not any("test/en/acc" in r for r in reports(t))
               for t in exp.iterdir() if t.is_dir() and not t.name.startswith(("baseline", "assets")))


def test_ctrl_c_ends_a_sweep_with_130_and_its_resume_command(tmp_path, cache):
    storage = tmp_path / "runs"
    cmd = [sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--preset", "smoke", "--storage", str(storage),
           "--name", "ctrl-c", "--set", "meta.steps_per_query_lang=60", "--set", "sweep.max_concurrent=1"]
    ended = interrupt(cmd, storage / "ctrl-c", signal.SIGINT, a_meta_trial_checkpointed)
    assert ended.returncode == 130, ended.stderr[-2000:]
    line = [x for x in ended.stderr.splitlines() if x.startswith("xlamaml: error:")]
    resume = f"xlamaml sweep --resume --name ctrl-c --storage {storage}"
    assert len(line) == 1 and "interrupted (SIGINT)" in line[0] and f"`{resume}`" in line[0]
    resumed = subprocess.run([sys.executable, "-m", "xlamaml.cli", "-q", *resume.split()[1:]], capture_output=True,
                             text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = {t.name: reports(t) for t in (storage / "ctrl-c").iterdir() if t.is_dir() and t.name != "assets"}
    assert len(got) == 3 and all(r and r[-1].get("done") for r in got.values())
    for lines in got.values():  # every iteration once
        its = [r["training_iteration"] for r in lines]
        assert its == sorted(set(its))


@pytest.mark.slow  # about 90 s: a rung-0 interruption and its resume
def test_sigterm_in_an_adaptive_rung_decides_nothing_and_the_resume_finishes(tmp_path, cache):
    storage = tmp_path / "runs"
    cmd = [sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--preset", "smoke", "--storage", str(storage),
           "--name", "term", "--set", "sweep.mode=adaptive", "--set", "meta.steps_per_query_lang=60",
           "--set", "sweep.max_concurrent=1"]
    ended = interrupt(cmd, storage / "term", signal.SIGTERM, a_meta_trial_checkpointed)
    assert ended.returncode == 143, ended.stderr[-2000:]
    assert "interrupted (SIGTERM)" in ended.stderr
    record = json.loads((storage / "term" / "xlamaml_adaptive.json").read_text())
    assert record["decisions"] == [] and record["spent"] == []  # no decision on a cut rung
    resumed = subprocess.run([sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--resume", "--name", "term",
                              "--storage", str(storage)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = json.loads((storage / "term" / "xlamaml_adaptive.json").read_text())
    assert len(record["spent"]) == len(record["rungs"])
