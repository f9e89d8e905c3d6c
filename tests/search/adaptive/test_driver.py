"""The adaptive driver's rung loop without Ray: a stand-in `fit` writes what trials write (reports, dev outcomes), so
decisions, errored cells and an interrupted rung can be checked in milliseconds."""

import json
import shutil
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from xlamaml.experiment.records import read_adaptive as read_record, trial_folder
from xlamaml.search.adaptive.driver import run_rungs
from xlamaml.cli import preset_path
from xlamaml.search.spec import load_sweep
from xlamaml.trainables.tasks.outcomes import write_outcomes

CELLS = ["x-maml:hi", "xla-maml:en>hi", "x-maml:de", "xla-maml:en>de"]
SETTINGS = ["sweep.mode=adaptive", f"sweep.assignments.items=[baseline,{','.join(json.dumps(c) for c in CELLS)}]",
            "sweep.seeds=[0,1]", "sweep.adaptive.steps=[0.5,1.0]", "sweep.adaptive.dev_items=[16,null]", "sweep.adaptive.seeds=[1,null]",
            "sweep.adaptive.keep=0.5", "sweep.adaptive.min_keep=1"]
# Each cell's dev accuracy: x-maml:de is best on every target it is judged on, xla-maml:en>de worst.
QUALITY = {"baseline": 0.5, "x-maml:hi": 0.6, "xla-maml:en>hi": 0.55, "x-maml:de": 0.8, "xla-maml:en>de": 0.3}


class FakeFit:
    """Writes, for each trial cell, the reports and dev (and last-rung test) outcomes a trial would; `fail` cells
    write nothing and come back errored; after `stop_at` = (rung, n) trials of that rung, it raises
    KeyboardInterrupt (a killed driver)."""

    def __init__(self, exp: Path, fail: set[str] = frozenset(), stop_at: tuple[int, int] | None = None):
        self.exp, self.fail, self.stop_at, self.calls = exp, set(fail), stop_at, []

    def __call__(self, trials: list[dict]) -> list:
        self.calls.append([(t["assignment"], t["seed"], t["rung"]["index"]) for t in trials])
        out = []
        for n, t in enumerate(trials):
            if self.stop_at is not None and (t["rung"]["index"], n) == self.stop_at:
                raise KeyboardInterrupt
            if t["assignment"] in self.fail:
                out.append(SimpleNamespace(error=RuntimeError("boom"), path=str(self.exp / t["folder"])))
                continue
            folder = self.exp / t["folder"]
            (folder / "predictions").mkdir(parents=True, exist_ok=True)
            if t.get("resume_from") and not (folder / "result.json").is_file():  # as SeedReports does
                shutil.copy(Path(t["resume_from"]) / "result.json", folder / "result.json")
            rng = np.random.default_rng(zlib.crc32(f"{t['assignment']}/{t['seed']}".encode()))
            items = t["rung"]["dev_items"] or 32
            for lang in ("en", "de", "hi"):
                values = (rng.random(32) < QUALITY[t["assignment"]]).astype(float)[:items]
                write_outcomes(folder / "predictions" / f"dev-{lang}.items.tsv", [f"u{i}" for i in range(items)],
                               {"acc": values})
            last = t["assignment"] == "baseline" or t["rung"]["steps"] == 4
            done = len((folder / "result.json").read_text().splitlines()) if (folder / "result.json").is_file() else 0
            report = {"training_iteration": done + 1, "rung/index": t["rung"]["index"], "done": True,
                      "meta/steps": t["rung"]["steps"], "time_this_iter_s": 1.0}
            checkpoint = folder / f"checkpoint_{done:06d}"  # as Ray stores it at the rung's end, with its iteration
            checkpoint.mkdir()
            (checkpoint / "iteration.txt").write_text(f"{done + 1}\n")
            if last:
                write_outcomes(folder / "predictions" / "test-hi.items.tsv", ["t0", "t1"], {"acc": np.ones(2)})
                report["test/avg/acc"] = 1.0
            with open(folder / "result.json", "a") as f:
                f.write(json.dumps(report) + "\n")
            out.append(SimpleNamespace(error=None, path=str(folder)))
        return out


@pytest.fixture
def sweep():
    return load_sweep(preset_path("smoke"), SETTINGS)


def test_a_cell_whose_trial_errors_is_stopped_and_the_others_go_on(tmp_path, sweep):
    fit = FakeFit(tmp_path / "exp", fail={"x-maml:de"})
    results = run_rungs(sweep, str(tmp_path), "exp", fit)
    assert any(r.error is not None for r in results)  # the caller exits non-zero naming it
    record = read_record(str(tmp_path / "exp"))
    decision = record.decisions[0]
    assert "errored" in decision["stopped"]["x-maml:de"]
    assert len(decision["kept"]) == 2 and "x-maml:de" not in decision["kept"]
    assert len(record.spent) == 2  # the last rung ran for the survivors
    assert [c[2] for c in fit.calls[1]] == [1, 1, 1, 1]  # 2 survivors x 2 seeds in rung 1


def test_an_interrupted_rung_continues_without_repeating_a_rung_or_a_decision(tmp_path, sweep):
    exp = tmp_path / "exp"
    first = FakeFit(exp, stop_at=(0, 2))
    with pytest.raises(KeyboardInterrupt):  # killed mid-rung 0: two trials ended it
        run_rungs(sweep, str(tmp_path), "exp", first)
    again = FakeFit(exp, stop_at=(1, 1))
    with pytest.raises(KeyboardInterrupt):  # rung 0 finished, decided, and rung 1 killed after one trial
        run_rungs(sweep, str(tmp_path), "exp", again)
    assert len(again.calls[0]) == 3  # only rung 0's unfinished trials ran again
    decided = read_record(str(exp)).decisions
    assert len(decided) == 1
    last = FakeFit(exp)
    run_rungs(sweep, str(tmp_path), "exp", last)
    record = read_record(str(exp))
    assert record.decisions == decided and len(record.spent) == 2
    assert len(last.calls) == 1 and len(last.calls[0]) == 3 and {c[2] for c in last.calls[0]} == {1}
    # every trial ended each of its rungs exactly once
    for cell in record.cells:
        for seed in (0, 1):
            path = exp / trial_folder(cell, seed) / "result.json"
            if path.is_file():
                ends = [json.loads(line)["rung/index"] for line in path.read_text().splitlines()]
                assert ends == sorted(set(ends)), (cell, seed)
    # the best cell went on; the worst one stopped
    assert "x-maml:de" in decided[0]["kept"] and "xla-maml:en>de" in decided[0]["stopped"]
    assert record.spent_total()["trial_runs"] == 5 + 4
    # a survivor's reports: its rung-0 end, then its rung-1 end, numbered on; its meta steps counted once
    assert record.spent_total()["meta_steps"] == 4 * 2 + 2 * (4 - 2) + 2 * 4
