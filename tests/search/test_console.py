"""What a sweep prints: one line per trial event named by its folder, none of Ray's boxed tables, workers' bars or
driver warnings, and the next command at the end; Ray's own reporter back with -v."""

import os
import subprocess
import sys

import pytest


def sweep(tmp_path, *flags):
    """Return the finished smoke sweep's (stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "xlamaml.cli", *flags, "sweep", "--preset", "smoke", "--storage",
                           str(tmp_path / "runs"), "--name", "console"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def test_the_smoke_sweep_prints_a_line_per_trial_event_and_the_next_command(tmp_path, cache):
    out, err = sweep(tmp_path)
    lines = (err + out).splitlines()
    assert len(lines) <= 40, "\n".join(lines)
    text = "\n".join(lines)
    for folder in ("baseline_s0", "x-maml_hi_s0", "xla-maml_en-hi_s0"):
        assert f"{folder}" in text and any(f"{folder}" in x and ": finished in" in x for x in lines), folder
    assert "meta step 2/4" in text  # the trials' own progress
    for noise in ("╭", "Trial status", "Loading weights", "WARNING", "Started a local Ray instance"):
        assert noise not in text, noise
    assert out.strip().splitlines()[-1].endswith(f"next: xlamaml analyze {tmp_path / 'runs' / 'console'}")


@pytest.mark.slow  # about 20 s: a second smoke sweep
def test_verbose_brings_back_rays_reporter(tmp_path, cache):
    assert "Trial status" in "".join(sweep(tmp_path, "-v"))


def test_the_status_table_shows_the_best_on_dev_first_and_counts_the_rest():
    from types import SimpleNamespace

    from xlamaml.search.console import status_table

    trials = [SimpleNamespace(path=f"/x/cell_{i}", status="TERMINATED",
                              last_result={"meta/steps": 4, "dev/avg_excl_aux/acc": i / 10, "test/avg/acc": 0.5})
              for i in range(12)]
    trials.append(SimpleNamespace(path="/x/broken", status="ERROR", last_result={}))
    lines = status_table(trials, rows=3)
    assert lines[0].split() == ["trial", "status", "steps", "dev", "avg", "test", "avg"]
    assert [line.split()[0] for line in lines[1:4]] == ["cell_11", "cell_10", "cell_9"]
    assert lines[1].split()[1:] == ["done", "4", "1.100", "0.500"] and lines[-1] == "... and 10 more trials"
