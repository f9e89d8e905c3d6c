"""Two `xlamaml sweep` on one experiment at once: one runs, the other is refused in one line naming the owner (and
the experiment holds each cell once)."""

import os
import subprocess
import sys


def test_two_sweeps_started_together_on_one_name(tmp_path, cache):
    storage = tmp_path / "runs"
    cmd = [sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--preset", "smoke", "--storage", str(storage),
           "--name", "twice"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    ended = [(p.wait(timeout=600), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in ended)
    assert codes == [0, 2], [err[-1500:] for _, err in ended]
    refused = next(err for code, err in ended if code == 2)
    lines = [line for line in refused.splitlines() if line.startswith("xlamaml: error:")]
    assert len(lines) == 1 and ("a sweep is running here" in lines[0] or "at the same time" in lines[0]
                                or "a sweep already ran here" in lines[0])
    folders = [f.name for f in (storage / "twice").iterdir() if f.is_dir() and f.name != "assets"]
    assert len(folders) == 3  # each cell once
