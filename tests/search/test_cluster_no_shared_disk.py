"""The smoke sweep on a two-node Ray cluster that shares no disk: the experiment storage is S3 (moto's server), and
the worker node runs in its own mount namespace, with empty tmpfs mounts over the driver's cache folder, the data
folder and the head's temp folder; the head has 0 CPUs, so the English stage and every trial run on the worker.
Token authentication is on (RAY_AUTH_MODE=token, one token in ~/.ray/auth_token). All of it runs in a private
network (loopback only) and PID namespace. Needs root (`unshare`); about 100 s on 2 cores."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from xlamaml.trainables.paths import default_data_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root and unshare for a worker that cannot see the driver's folders")


SCRIPT = r"""
set -u
ip link set lo up
# The cluster's token (~/.ray/auth_token); with RAY_AUTH_MODE=token every node and driver must present it.
"$RAY" get-auth-token --generate > /dev/null
"$RAY" start --head --num-cpus=0 --node-ip-address=127.0.0.1 --port="$PORT" --include-dashboard=false \
    --temp-dir="$HEAD_TMP" --block > "$OUT/head.log" 2>&1 &
for i in $(seq 120); do
    [ -f "$HOME/.ray/auth_token" ] && (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.5
done
XLAMAML_CACHE="$WORKER_CACHE" unshare -m --propagation private bash -c \
    "mount -t tmpfs tmpfs '$DRIVER_CACHE' && mount -t tmpfs tmpfs '$DATA' && mount -t tmpfs tmpfs '$HEAD_TMP' && \
     exec '$RAY' start --address=127.0.0.1:$PORT --num-cpus=2 --node-ip-address=127.0.0.1 --temp-dir='$WORKER_TMP' \
     --block" > "$OUT/worker.log" 2>&1 &
"$MOTO" -H 127.0.0.1 -p "$S3_PORT" > "$OUT/moto.log" 2>&1 &
sleep 10
"$PY" -c "import pyarrow.fs as f; f.S3FileSystem(endpoint_override='$AWS_ENDPOINT_URL', allow_bucket_creation=True).create_dir('nsd')"
"$PY" -m xlamaml.cli -q sweep --config smoke --address "127.0.0.1:$PORT" --storage s3://nsd/runs --name nsd \
    > "$OUT/sweep.out" 2> "$OUT/sweep.err"
echo $? > "$OUT/sweep.rc"
# The storage dies with the namespace: read back what the test checks.
"$PY" -c "
import json
from xlamaml.experiment import storage
exp = 's3://nsd/runs/nsd'
files = storage.list_files(exp)
results = {f.split('/')[0]: storage.read_bytes(storage.join(exp, f)).decode() for f in files if f.endswith('/result.json')}
json.dump({'files': files, 'results': results}, open('$OUT/storage.json', 'w'))
" 2> "$OUT/read.err"
RAY_AUTH_TOKEN=0123456789abcdef0123456789abcdef "$PY" -m xlamaml.cli -q sweep --config smoke \
    --address "127.0.0.1:$PORT" --storage s3://nsd/runs --name token > /dev/null 2> "$OUT/token.err"
echo $? > "$OUT/token.rc"
date +%s.%N > "$OUT/bad.t0"
"$PY" -m xlamaml.cli -q sweep --config smoke --address "127.0.0.1:$((PORT + 1))" --storage s3://nsd/runs --name bad \
    > /dev/null 2> "$OUT/bad.err"
echo $? > "$OUT/bad.rc"
date +%s.%N > "$OUT/bad.t1"
"""


def test_smoke_sweep_on_a_worker_that_sees_only_the_storage(tmp_path):
    short = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # Ray's socket paths must fit in 107 bytes
    dirs = {"HEAD_TMP": short / "h", "WORKER_TMP": short / "w", "DRIVER_CACHE": tmp_path / "driver-cache",
            "WORKER_CACHE": tmp_path / "worker-cache", "HOME": tmp_path / "home"}
    for d in dirs.values():
        d.mkdir()
    env = {**os.environ, **{k: str(v) for k, v in dirs.items()}, "OUT": str(tmp_path), "DATA": default_data_dir(),
           "PORT": "6390", "RAY": os.path.join(os.path.dirname(sys.executable), "ray"), "PY": sys.executable,
           "RAY_AUTH_MODE": "token", "RAY_TMPDIR": str(short / "d"), "XLAMAML_CACHE": str(dirs["DRIVER_CACHE"]),
           "MOTO": os.path.join(os.path.dirname(sys.executable), "moto_server"), "S3_PORT": "6399",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:6399", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    env.pop("RAY_ADDRESS", None)
    # A private network (loopback only) and PID namespace: ending the script's shell ends every Ray process in it.
    proc = subprocess.Popen(["unshare", "-n", "-p", "-f", "--mount-proc", "bash", "-c", SCRIPT], env=env,
                            cwd=os.getcwd(), start_new_session=True)
    try:
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(short, ignore_errors=True)
    logs = {n: (tmp_path / n).read_text()[-1500:] for n in ("head.log", "worker.log", "sweep.err")
            if (tmp_path / n).is_file()}
    assert (tmp_path / "sweep.rc").read_text().strip() == "0", logs

    stored = json.loads((tmp_path / "storage.json").read_text())
    assert stored["results"], (tmp_path / "read.err").read_text()[-2000:]
    finals, nodes = [], set()
    for trial, text in stored["results"].items():
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        finals.append(lines[-1])
        nodes |= {line["node_id"] for line in lines}
    assert len(finals) == 3 and all(f.get("done") and "test/avg/acc" in f for f in finals)
    assert len(nodes) == 1  # the worker: the head has no CPU
    assert any(f.startswith("assets/base-") for f in stored["files"])
    assert not (tmp_path / "storage").exists()  # nothing went to a local folder
    # The English stage ran on the worker (its cache has it), not on the driver; trials read the assets.
    assert list((dirs["WORKER_CACHE"] / "base").iterdir()) and not (dirs["DRIVER_CACHE"] / "base").exists()
    fetched = {p.name.split("-")[0] for p in (dirs["WORKER_CACHE"] / "assets").iterdir() if not p.name.startswith(".")}
    assert fetched == {"base", "data", "english"}  # the English stage read its own data asset there

    # A token the cluster refuses is one error line naming the address and the token setting (Ray's own C++ log
    # lines may stand before it on stderr).
    err = [line for line in (tmp_path / "token.err").read_text().splitlines() if line.startswith("xlamaml: error:")]
    assert (tmp_path / "token.rc").read_text().strip() == "2" and len(err) == 1, err
    assert "--address 127.0.0.1:6390" in err[0] and "RAY_AUTH_MODE=token" in err[0]

    # A wrong address is one line naming it, in seconds.
    err = [line for line in (tmp_path / "bad.err").read_text().splitlines() if line.startswith("xlamaml: error:")]
    assert (tmp_path / "bad.rc").read_text().strip() == "2" and len(err) == 1, err
    assert "127.0.0.1:6391: no Ray cluster answers there" in err[0]
    assert float((tmp_path / "bad.t1").read_text()) - float((tmp_path / "bad.t0").read_text()) < 30
