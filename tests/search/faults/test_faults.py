"""Fault injection on the smoke sweep, as a user meets faults: a storage that fills up mid-sweep, newest checkpoints
cut short by a kill, Ray's experiment state cut, a worker node lost. Every sweep runs as a subprocess (the CLI) or
on a loopback Ray cluster, and every process started here is stopped by its process group. Slow: each takes one to
three minutes on 2 cores (timings in the module's tests' docstrings); the full-disk one needs root and `unshare`
(a private mount namespace holding a small tmpfs)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STEPS = "meta.steps_per_query_lang=60"  # meta trials of 30 reports: long enough to be stopped midway


def trials(exp: Path) -> dict[str, list[dict]]:
    """Return each trial folder's reports (cut lines skipped)."""
    from xlamaml.experiment.reports import parse_report

    out = {}
    for d in sorted(p for p in exp.iterdir() if p.is_dir() and p.name != "assets"):
        if (d / "params.json").is_file() or (d / "result.json").is_file():
            text = (d / "result.json").read_text(errors="replace") if (d / "result.json").is_file() else ""
            out[d.name] = [r for r in (parse_report(line) for line in text.splitlines() if line.strip()) if r]
    return out


def check_every_trial_done_once(got: dict[str, list[dict]]) -> None:
    """Assert three trials, each done, its meta steps spent exactly, its iterations 1..n all reported."""
    assert len(got) == 3, sorted(got)
    for name, reports in got.items():
        assert reports and reports[-1].get("done") and "test/avg/acc" in reports[-1], name
        final = reports[-1]
        iterations = {r["training_iteration"] for r in reports}
        assert iterations == set(range(1, final["training_iteration"] + 1)), name
        if not name.startswith("baseline"):
            assert final["meta/steps"] == 60 and final["training_iteration"] == 30, name


def cli(*args: str, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `xlamaml ARGS` in a new session (its process group stopped if it outlives `timeout`)."""
    proc = subprocess.Popen([sys.executable, "-m", "xlamaml.cli", "-q", *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def error_lines(stderr: str) -> list[str]:
    """Return the `xlamaml: error:` lines of a command's stderr."""
    return [line for line in stderr.splitlines() if line.startswith("xlamaml: error:")]


def kill_when(storage: Path, name: str, ready, extra: list[str], env: dict) -> None:
    """Start the smoke sweep `name`, wait until `ready(exp)` holds, then SIGKILL it with the Ray it started."""
    cmd = [sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--preset", "smoke", "--storage", str(storage),
           "--name", name, "--set", STEPS, "--set", "sweep.max_concurrent=1", *extra]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exp = storage / name
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if exp.is_dir() and ready(exp):
                return
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended (status {proc.returncode}) before it could be killed")
            time.sleep(0.3)
        pytest.fail("the sweep never reached the state to kill it in")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait()


def midway(exp: Path, checkpoints: int = 2) -> bool:
    """Return whether a trial finished and a meta trial holds `checkpoints` checkpoints, unfinished."""
    got = trials(exp)
    done = [n for n, r in got.items() if r and r[-1].get("done")]
    return bool(done) and any(n not in done and len(list((exp / n).glob("checkpoint_*/trial.pt"))) >= checkpoints
                              for n in got)


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "PYTHONUNBUFFERED": "1", "XLAMAML_CACHE": str(tmp_path / "cache")}


def test_truncated_newest_checkpoints_then_resume_finishes_every_trial(tmp_path, env):
    """SIGKILL with a meta trial two checkpoints in, its newest trial.pt cut to 1 KB (a partial write): the resume
    restores the one before, names the cut file in one line and finishes every trial. About 2 minutes."""
    storage = tmp_path / "runs"
    kill_when(storage, "cut", midway, [], env)
    exp = storage / "cut"
    cut = []
    for name, reports in trials(exp).items():
        if not (reports and reports[-1].get("done")):
            newest = sorted((exp / name).glob("checkpoint_*/trial.pt"))[-1]
            newest.write_bytes(newest.read_bytes()[:1024])
            cut.append(newest)
    assert cut
    resumed = cli("sweep", "--resume", "--name", "cut", "--storage", str(storage), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    check_every_trial_done_once(trials(exp))
    # Which checkpoint Ray's last snapshot names (the cut one or the one before) depends on when it was taken: the
    # in-process test (tests/trainables/test_checkpoints.py) checks the warning line; here it is kept for the log.
    (tmp_path / "resume.err").write_text(resumed.stderr)


def test_cut_ray_state_is_rebuilt_from_the_record_never_a_new_trial(tmp_path, env):
    """SIGKILL mid-sweep, then Ray's tuner.pkl and experiment state cut (a full disk while Ray wrote them): the resume
    rebuilds the run from xlamaml_sweep.json and the trial folders: the same three trials, each done, no
    `run_sNone` trial. About 2 minutes."""
    storage = tmp_path / "runs"
    kill_when(storage, "state", lambda exp: midway(exp, 1), [], env)
    exp = storage / "state"
    before = sorted(trials(exp))
    for path in [exp / "tuner.pkl", *exp.glob("experiment_state-*.json")]:
        path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])
    resumed = cli("sweep", "--resume", "--name", "state", "--storage", str(storage), env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = trials(exp)
    check_every_trial_done_once(got)
    assert sorted(got) == before or set(before) <= set(got), (before, sorted(got))
    assert not [n for n in got if "sNone" in n]
    assert "rebuilding the run" in resumed.stderr
    analyzed = cli("analyze", str(exp), "--out", str(tmp_path / "analysis"), "--resamples", "200", env=env)
    assert analyzed.returncode == 0, analyzed.stderr[-2000:]


FULL_DISK = r"""
set -u
mount -t tmpfs -o size=64m tmpfs "$STORAGE"
"$PY" -m xlamaml.cli -q sweep --preset smoke --storage "$STORAGE" --name full --force --set "$STEPS" \
    --set sweep.max_concurrent=1 > "$OUT/sweep.out" 2> "$OUT/sweep.err" &
SWEEP=$!
# Once the assets are written and a trial has reported, shrink the tmpfs to what is used plus a little: the
# trials' checkpoints fill it mid-sweep.
for i in $(seq 600); do
    ls "$STORAGE"/full/*/result.json > /dev/null 2>&1 && break
    sleep 0.2
done
USED=$(df --output=used -B1 "$STORAGE" | tail -1)
mount -o remount,size=$((USED + 400 * 1024)) "$STORAGE"
df -B1 "$STORAGE" > "$OUT/df-small.txt"
wait $SWEEP
echo $? > "$OUT/sweep.rc"
df -B1 "$STORAGE" > "$OUT/df-full.txt"
# A new sweep on the full storage, without --force: one line before any trial starts.
"$PY" -m xlamaml.cli -q sweep --preset smoke --storage "$STORAGE" --name second > /dev/null 2> "$OUT/second.err"
echo $? > "$OUT/second.rc"
# The damaged experiment, as the full disk left it, still analyzes.
"$PY" -m xlamaml.cli -q analyze "$STORAGE/full" --out "$OUT/analysis-damaged" --resamples 200 > /dev/null \
    2> "$OUT/damaged.err"
echo $? > "$OUT/damaged.rc"
mount -o remount,size=256m "$STORAGE"   # more space
"$PY" -m xlamaml.cli -q sweep --resume --name full --storage "$STORAGE" > "$OUT/resume.out" 2> "$OUT/resume.err"
echo $? > "$OUT/resume.rc"
"$PY" -m xlamaml.cli -q analyze "$STORAGE/full" --out "$OUT/analysis" --resamples 200 > "$OUT/analyze.out" \
    2> "$OUT/analyze.err"
echo $? > "$OUT/analyze.rc"
# The tmpfs dies with the namespace: copy back what the test reads.
cp -r "$STORAGE/full" "$OUT/exp"
rm -rf "$OUT/exp/assets"
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (a tmpfs)")
def test_full_storage_mid_sweep_stops_cleanly_then_resume_and_analyze(tmp_path, env):
    """The storage a tmpfs in a private mount namespace, shrunk to what the assets and the first reports use plus
    400 KB: the sweep stops with one line naming the full path and --resume (no traceback); after more space the
    resume finishes every trial once and analyze writes the table. About 2-3 minutes."""
    storage = tmp_path / "storage"
    storage.mkdir()
    script_env = {**env, "STORAGE": str(storage), "OUT": str(tmp_path), "PY": sys.executable, "STEPS": STEPS}
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "bash", "-c", FULL_DISK], env=script_env,
                            cwd=os.getcwd(), start_new_session=True)
    try:
        proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    read = {n: (tmp_path / n).read_text() if (tmp_path / n).is_file() else "" for n in
            ("sweep.rc", "sweep.err", "resume.rc", "resume.err", "analyze.rc", "analyze.err", "df-small.txt",
             "second.rc", "second.err", "damaged.rc", "damaged.err")}
    lines = error_lines(read["sweep.err"])
    assert read["sweep.rc"].strip() == "2" and len(lines) == 1, read
    assert "storage full" in lines[0] and "No space left on device" in lines[0] and "--resume --name full" in lines[0]
    assert "Traceback" not in read["sweep.err"], read["sweep.err"][-3000:]
    second = error_lines(read["second.err"])
    assert read["second.rc"].strip() == "2" and len(second) == 1, read["second.err"][-3000:]
    assert f"{storage}/second" in second[0] and ("MB free" in second[0] or "no space left" in second[0]), second
    assert read["damaged.rc"].strip() == "0", read["damaged.err"][-3000:]
    assert (tmp_path / "analysis-damaged" / "results.csv").is_file()
    assert read["resume.rc"].strip() == "0", read["resume.err"][-3000:]
    check_every_trial_done_once(trials(tmp_path / "exp"))
    assert read["analyze.rc"].strip() == "0", read["analyze.err"][-3000:]
    assert (tmp_path / "analysis" / "table.md").is_file()


LOST_WORKER = r"""
set -u
ip link set lo up
"$RAY" get-auth-token --generate > /dev/null
"$RAY" start --head --num-cpus=0 --node-ip-address=127.0.0.1 --port="$PORT" --include-dashboard=false \
    --temp-dir="$TMPD/h" --block > "$OUT/head.log" 2>&1 &
for i in $(seq 120); do
    [ -f "$HOME/.ray/auth_token" ] && (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.5
done
# Worker A alone first, in its own process group: the first trials land on it.
setsid "$RAY" start --address=127.0.0.1:$PORT --num-cpus=1 --node-ip-address=127.0.0.1 --block \
    > "$OUT/worker-a.log" 2>&1 &
A=$!
sleep 8
"$PY" -m xlamaml.cli -q sweep --preset smoke --address "127.0.0.1:$PORT" --storage "$STORAGE" --name lost \
    --set "$STEPS" > "$OUT/sweep.out" 2> "$OUT/sweep.err" &
SWEEP=$!
# Once a meta trial on A holds a checkpoint, worker B joins and A is lost (SIGKILL to its whole process group).
for i in $(seq 1200); do
    ls "$STORAGE"/lost/*maml*/checkpoint_*/trial.pt > /dev/null 2>&1 && break
    sleep 0.2
done
"$RAY" start --address=127.0.0.1:$PORT --num-cpus=1 --node-ip-address=127.0.0.1 --block > "$OUT/worker-b.log" 2>&1 &
sleep 3
kill -9 -- -$A
date +%s > "$OUT/killed.t"
wait $SWEEP
echo $? > "$OUT/sweep.rc"
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (loopback)")
def test_a_worker_lost_mid_sweep_then_every_trial_done(tmp_path):
    """A loopback cluster in a private network and PID namespace: a 0-CPU head and 1-CPU worker A; once a meta
    trial on A holds a checkpoint, worker B joins and A is SIGKILLed (a preempted spot node, all its processes): the
    trial is retried from its checkpoint on B and every trial finishes. About 2 minutes."""
    short = Path(tempfile.mkdtemp(prefix="rl", dir="/tmp"))  # Ray's socket paths must fit in 107 bytes
    (short / "home").mkdir()
    env = {**os.environ, "OUT": str(tmp_path), "STORAGE": str(tmp_path / "runs"), "TMPD": str(short),
           "HOME": str(short / "home"), "PORT": "6392", "RAY": os.path.join(os.path.dirname(sys.executable), "ray"),
           "PY": sys.executable, "STEPS": STEPS, "RAY_AUTH_MODE": "token", "RAY_TMPDIR": str(short / "d"),
           "XLAMAML_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(["unshare", "-n", "-p", "-f", "--mount-proc", "bash", "-c", LOST_WORKER], env=env,
                            cwd=os.getcwd(), start_new_session=True)
    try:
        proc.wait(timeout=420)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(short, ignore_errors=True)
    err = (tmp_path / "sweep.err").read_text() if (tmp_path / "sweep.err").is_file() else ""
    assert (tmp_path / "killed.t").is_file(), err[-3000:]
    assert (tmp_path / "sweep.rc").read_text().strip() == "0", err[-3000:]
    got = trials(tmp_path / "runs" / "lost")
    check_every_trial_done_once(got)
    moved = [n for n, reports in got.items() if len({r["node_id"] for r in reports}) == 2]
    assert moved, {n: {r["node_id"] for r in reports} for n, reports in got.items()}  # retried on worker B
