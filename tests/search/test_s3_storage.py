"""A sweep whose storage is a real S3 API (moto's server on 127.0.0.1): sweep, SIGKILL of the driver, --resume,
`xlamaml analyze` from the URI. About 90 s on 2 cores."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pyarrow.fs as pafs
import pytest

from xlamaml.experiment import storage

BUCKET = "xlamaml-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(monkeypatch, tmp_path):
    """An S3 API on loopback with an empty bucket; the environment points pyarrow (and Ray) at it."""
    port = free_port()
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                               "-p", str(port)], start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("moto_server did not start")
                time.sleep(0.2)
        pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], allow_bucket_creation=True).create_dir(BUCKET)
        yield f"s3://{BUCKET}/runs"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def results(exp: str) -> dict[str, list[dict]]:
    """Return each trial's result lines, read from the storage."""
    out = {}
    for name in storage.list_files(exp):
        if name.endswith("/result.json"):
            text = storage.read_bytes(storage.join(exp, name)).decode()
            out[name.split("/")[0]] = [json.loads(line) for line in text.splitlines() if line.strip()]
    return out


def test_sweep_on_s3_survives_sigkill_and_analyzes_from_the_uri(tmp_path, cache, s3):
    cli = [sys.executable, "-m", "xlamaml.cli", "-q"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    exp = f"{s3}/killed"
    proc = subprocess.Popen([*cli, "sweep", "--config", "smoke", "--storage", s3, "--name", "killed",
                             "--set", "meta.steps_per_query_lang=60", "--set", "sweep.max_concurrent=1"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            got = results(exp) if storage.exists(exp) else {}
            names = storage.list_files(exp) if got else []
            done = [n for n, lines in got.items() if lines and lines[-1].get("done")]
            midway = [n for n in got if n not in done and any(f.startswith(f"{n}/checkpoint_") for f in names)]
            if done and midway:
                break
            time.sleep(1)
        else:
            pytest.fail("the sweep never reached a finished trial and a checkpointed one")
        finished_before = {n: len(got[n]) for n in done}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait()
    assert not (tmp_path / "s3:").exists() and not os.path.exists("s3:")  # never a local folder named like the URI

    resumed = subprocess.run([*cli, "sweep", "--resume", "--name", "killed", "--storage", s3], env=env,
                             capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = results(exp)
    summary = {n: (len(lines), lines[-1].get("done"), lines[-1].get("training_iteration")) for n, lines in got.items()}
    files = [f for f in storage.list_files(exp) if not f.startswith("assets/")]
    errors = {f: storage.read_bytes(storage.join(exp, f)).decode()[-1500:] for f in files if f.endswith("error.txt")}
    assert len(got) == 3 and all(lines[-1].get("done") for lines in got.values()), (summary, errors, files,
                                                                                   resumed.stderr[-3000:])
    for name, count in finished_before.items():
        assert len(got[name]) == count  # a finished trial is not run again
    assert all(lines[-1]["meta/steps"] == 60 for name, lines in got.items() if not name.startswith("baseline"))
    assert any(f.startswith("assets/base-") for f in storage.list_files(exp))

    analyzed = subprocess.run([*cli, "analyze", exp, "--out", str(tmp_path / "analysis")], env=env,
                              capture_output=True, text=True, timeout=120)
    assert analyzed.returncode == 0, analyzed.stderr[-2000:]
    table = (tmp_path / "analysis" / "table.md").read_text()
    assert "xla-maml" in table and "baseline" in table


def test_a_missing_bucket_is_one_line_before_anything_runs(tmp_path, cache, s3):
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--config", "smoke", "--storage",
                          "s3://no-such-bucket/runs", "--name", "x"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xlamaml: error: s3://no-such-bucket/runs/x: cannot"), err
    assert not (tmp_path / "cache" / "base").exists()  # no English stage was trained
    assert time.perf_counter() - t0 < 60


def test_adaptive_sweep_on_s3_decides_from_the_bucket(tmp_path, cache, s3):
    """An adaptive sweep whose only storage is the bucket: its record, the rung-0 dev outcomes the rule reads and the
    survivors' continued trials all live there. About 1.5 minutes."""
    from xlamaml.experiment.records import ADAPTIVE_FILE as RECORD, read_adaptive as read_record, trial_folder

    cells = ["x-maml:hi", "xla-maml:en>hi", "x-maml:de"]
    settings = ["sweep.mode=adaptive", f"sweep.assignments.items=[baseline,{','.join(json.dumps(c) for c in cells)}]",
                "sweep.adaptive.steps=[0.5,1.0]", "sweep.adaptive.dev_items=[16,null]", "sweep.adaptive.seeds=[1,null]", "sweep.adaptive.keep=0.5",
                "sweep.adaptive.min_keep=1"]
    done = subprocess.run([sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--config", "smoke", "--storage", s3,
                           "--name", "adaptive", *[a for s in settings for a in ("--set", s)]],
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    exp = f"{s3}/adaptive"
    assert storage.exists(storage.join(exp, RECORD))
    record = read_record(exp)
    kept = record.decisions[0]["kept"]
    assert len(kept) == 2 and len(record.spent) == 2
    got = results(exp)
    for cell in cells:
        lines = got[trial_folder(cell, 0)]
        assert ("test/avg/acc" in lines[-1]) == (cell in kept), cell
        assert [r["training_iteration"] for r in lines] == list(range(1, len(lines) + 1)), cell


@pytest.mark.slow  # about 40 s
def test_predictive_sweep_on_s3_reads_its_dev_outcomes_from_the_bucket(tmp_path, cache, s3):
    """A predictive sweep whose only storage is the bucket: its record, the dev outcomes at each fraction the model
    reads, the continued runs and the picks' test all live there. About a minute."""
    from xlamaml.experiment.records import PREDICTIVE_FILE, read_predictive, trial_folder

    cells = ["x-maml:hi", "xla-maml:en>hi", "x-maml:de"]
    settings = ["sweep.mode=predictive", f"sweep.assignments.items=[baseline,{','.join(json.dumps(c) for c in cells)}]",
                "sweep.seeds=[0,1]", "sweep.predictive.init_share=0.5", "sweep.predictive.fractions=[0.5,1.0]",
                "sweep.predictive.max_share=0.6"]
    done = subprocess.run([sys.executable, "-m", "xlamaml.cli", "-q", "sweep", "--config", "smoke", "--storage", s3,
                           "--name", "predictive", *[a for s in settings for a in ("--set", s)]],
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    exp = f"{s3}/predictive"
    assert storage.exists(storage.join(exp, PREDICTIVE_FILE))
    record = read_predictive(exp)
    assert record.finished() and len(record.decisions) >= 1
    tested = {trial_folder(r["cell"], record.seeds[r["seed"]]) for r in record.rounds[-1]["runs"]}
    got = results(exp)
    for rnd in record.rounds[:-1]:
        for run in rnd["runs"]:
            folder = trial_folder(run["cell"], record.seeds[run["seed"]])
            lines = got[folder]
            assert ("test/avg/acc" in lines[-1]) == (folder in tested), folder
            assert [r["training_iteration"] for r in lines] == list(range(1, len(lines) + 1)), folder
            assert storage.exists(storage.join(exp, folder, "predictions", "steps-2", "dev-hi.items.tsv")), folder
