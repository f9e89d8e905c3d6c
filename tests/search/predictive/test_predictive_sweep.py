"""Predictive sweeps through Ray on the shared data with the tiny model: rounds chosen by the map model, test scored
for the picks only, every run continued exactly, and an interruption between and inside rounds that loses no
decision and repeats no round. About 1.5 minutes."""

import json
from pathlib import Path

import numpy as np
import pytest

from xlamaml.cli import preset_path
from xlamaml.experiment.records import PredictiveRecord, read_predictive, trial_folder
from xlamaml.search import sweep as sweep_module
from xlamaml.search.predictive.driver import DevOutcomes, search_state
from xlamaml.search.spec import load_sweep
from xlamaml.search.sweep import run_sweep
from xlamaml.trainables.errors import ConfigError
from xlamaml.trainables.tasks.outcomes import write_outcomes

CELLS = ["x-maml:hi", "xla-maml:en>hi", "x-maml:de", "xla-maml:en>de"]
SETTINGS = ["sweep.mode=predictive", f'sweep.assignments.items=[baseline,{",".join(json.dumps(c) for c in CELLS)}]',
            "sweep.seeds=[0,1]", "sweep.predictive.init_share=0.5", "sweep.predictive.fractions=[0.5,1.0]"]


class Killed(Exception):
    """The driver stopped from outside (as a SIGKILL would, between two lines of the driver)."""


def reports(exp: Path, folder: str) -> list[dict]:
    """Return a trial folder's reports."""
    path = exp / folder / "result.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory, ray_local):
    """Return (experiment, the record as it stood at the first kill, at the second): killed once after round 1's
    trials finished but before its account was written, once before round 3's trials started; resumed each time."""
    tmp = tmp_path_factory.mktemp("predictive")
    real_fit, calls, seen = sweep_module.fit, {"n": 0}, []

    def fit(sw, root, name, resume, cells):
        calls["n"] += 1
        exp = Path(root) / name
        if calls["n"] == 4:  # round 3, before any of its trials ran
            seen.append(read_predictive(str(exp)))
            raise Killed()
        results = real_fit(sw, root, name, resume, cells)
        if calls["n"] == 2:  # round 1, its trials done, its account not yet written
            seen.append(read_predictive(str(exp)))
            raise Killed()
        return results

    sweep_module.fit = fit
    try:
        with pytest.raises(Killed):
            run_sweep(load_sweep(preset_path("smoke"), SETTINGS), tmp / "runs", "pred")
        with pytest.raises(Killed):
            run_sweep(None, tmp / "runs", "pred", resume=True)
        exp = run_sweep(None, tmp / "runs", "pred", resume=True)
    finally:
        sweep_module.fit = real_fit
    return Path(exp), seen


def test_predictive_sweep_decides_on_dev_tests_only_the_picks_and_resumes(interrupted_then_resumed):
    exp, (first_kill, second_kill) = interrupted_then_resumed
    record = read_predictive(str(exp))
    assert record is not None and record.finished()
    # round 0: the baseline, then half the cells with the first seed at the full budget, dev at both fractions
    assert len(record.rounds[0]["runs"]) == 2 and all(r["to"] == 1.0 and r["dev_at"] == [0.5, 1.0]
                                                      for r in record.rounds[0]["runs"])
    # nothing decided before a kill was decided again: the rounds and decisions then are those of the end
    assert len(first_kill.spent) == 1 and first_kill.rounds == record.rounds[:2]
    assert second_kill.rounds == record.rounds[:4] and second_kill.decisions == record.decisions[:3]
    assert len(record.spent) == len(record.rounds) and len(record.decisions) == len(record.rounds) - 1
    # the last round scores test for every full-budget seed of the picks, and nothing else is ever tested
    test_round = record.rounds[-1]
    assert test_round["test"] and record.answer is not None
    chosen = {v["pick"] for v in record.answer["targets"].values()} - {None}
    assert {r["cell"] for r in test_round["runs"]} == chosen
    tested = {trial_folder(r["cell"], record.seeds[r["seed"]]) for r in test_round["runs"]}
    state, broken = search_state(record)
    assert not broken
    for c, seeds in state.reached.items():
        for s, reached in seeds.items():
            folder = trial_folder(record.cells[c], record.seeds[s])
            got = reports(exp, folder)
            assert [r["training_iteration"] for r in got] == list(range(1, len(got) + 1)), folder
            ends = [r["rung/index"] for r in got if r.get("done")]
            assert ends == sorted(set(ends)), folder  # no round ran twice
            assert (exp / folder / "predictions" / "steps-2" / "dev-hi.items.tsv").is_file()  # dev at half budget
            has_test = any(k.startswith("test/") for k in got[-1])
            assert has_test == (folder in tested), folder
            if folder in tested:
                assert reached == 1.0 and got[-1]["meta/steps"] == 4
            else:  # never continued again: no weights kept
                assert not list((exp / folder).glob("checkpoint_*"))
                assert not list((exp / folder).glob("previous/checkpoint_*"))
                assert not list((exp / folder).glob("predictions/test-*"))
    # every target has a pick among the cells that finished, and a predicted gain with an interval for every cell it
    # is judged on (x-maml:hi and xla-maml:en>hi trained on hi's dev set: not judged on hi)
    for target, v in record.answer["targets"].items():
        assert v["pick"] in v["contenders"]
        assert v["cells"][v["pick"]]["full_seeds"] >= 1
        assert set(v["cells"]) == {c for c in CELLS if not c.endswith(target)}
        assert all(c["lo"] <= c["mean"] <= c["hi"] for c in v["cells"].values())
    # what the rounds spent is what the trials reported: 4 meta steps a full run, 2 a half
    steps = sum(4 * (r["to"] - r["from"]) for rnd in record.rounds for r in rnd["runs"])
    assert record.spent_total()["meta_steps"] == steps


def test_a_run_continued_over_rounds_ends_where_a_grid_trial_ends(interrupted_then_resumed, tmp_path):
    """A pick's seed that ran to half its budget in one round, went on in another and scored test in a third ends
    exactly as a grid trial of the same cell and seed (optimizer, schedule, sampler and RNG carried)."""
    exp, _ = interrupted_then_resumed
    record = read_predictive(str(exp))
    split = [(r["cell"], record.seeds[r["seed"]]) for rnd in record.rounds for r in rnd["runs"] if r["from"] == 0.5]
    tested = [(r["cell"], record.seeds[r["seed"]]) for r in record.rounds[-1]["runs"]]
    both = [x for x in tested if x in split] or tested
    cell, seed = both[0]
    grid = run_sweep(load_sweep(preset_path("smoke"), [f"sweep.assignments.items=[{json.dumps(cell)}]",
                                                      f"sweep.seeds=[{seed}]"]), tmp_path / "runs", "grid")
    folder = next(d for d in Path(grid).iterdir() if (d / "params.json").is_file())
    final, mine = reports(Path(grid), folder.name)[-1], reports(exp, trial_folder(cell, seed))[-1]
    keys = [k for k in final if k.startswith("test/")] + ["meta/query_loss", "meta/steps"]
    assert keys and {k: final[k] for k in keys} == {k: mine[k] for k in keys}


def write_items(folder: Path, split: str, lang: str, values: list[int]) -> None:
    """Write a trial's per-item outcomes of one set."""
    folder.mkdir(parents=True, exist_ok=True)
    write_outcomes(folder / f"{split}-{lang}.items.tsv", [f"u{i}" for i in range(len(values))],
                   {"acc": np.asarray(values, dtype=float)})


def test_the_model_reads_dev_outcomes_at_each_fraction_and_never_test(tmp_path):
    sw = load_sweep(preset_path("smoke"), SETTINGS)
    record = PredictiveRecord(CELLS, [{"assignment": "baseline", "seed": 0}], [0, 1], "acc", ["de", "hi"],
                              [0.5, 1.0], rounds=[{"runs": [{"cell": CELLS[1], "seed": 0, "from": 0.0, "to": 1.0,
                                                             "dev_at": [0.5, 1.0]}], "test": False}],
                              spent=[{"failed": []}])
    write_items(tmp_path / "baseline_s0" / "predictions", "dev", "de", [0, 1, 0, 1])
    write_items(tmp_path / "baseline_s0" / "predictions", "dev", "hi", [1, 1, 0, 0, 1])  # one item more
    trial = tmp_path / trial_folder(CELLS[1], 0) / "predictions"
    for steps, de, hi in ((2, [1, 1, 0, 1], [1, 1, 1, 0]), (4, [1, 1, 1, 1], [0, 0, 0, 0])):
        write_items(trial / f"steps-{steps}", "dev", "de", de)
        write_items(trial / f"steps-{steps}", "dev", "hi", hi)
        write_items(trial / f"steps-{steps}", "test", "de", [1 - v for v in de])  # never read
    write_items(trial, "test", "hi", [1, 1, 1, 1])
    state, _ = search_state(record)
    base, outcomes = DevOutcomes(str(tmp_path), record, sw).arrays(state)
    assert base.tolist() == [[0, 1, 0, 1], [1, 1, 0, 0]]  # the items every file has, as many per target
    assert outcomes(1, 0.5, [0])[:, 0].tolist() == [[1, 1, 0, 1], [1, 1, 1, 0]]
    assert outcomes(1, 1.0, [0])[:, 0].tolist() == [[1, 1, 1, 1], [0, 0, 0, 0]]


@pytest.mark.parametrize("setting, key", [("sweep.predictive.fractions=[0.5]", "sweep.predictive.fractions"),
                                          ("sweep.predictive.max_share=0", "sweep.predictive.max_share"),
                                          ("sweep.grid={meta.sampling: [random]}", "sweep.grid")])
def test_bad_predictive_settings_name_their_key(setting, key):
    with pytest.raises(ConfigError, match=key):
        load_sweep(preset_path("smoke"), SETTINGS + [setting])


def test_weights_are_dropped_only_for_cells_no_target_may_pick():
    from types import SimpleNamespace

    from xlamaml.search.predictive.driver import unlikely_cells

    # two targets, four cells: cell 3 never ran; cell 2 is far below on both; cell 1 is close to target 1's pick
    post = SimpleNamespace(targets=["de", "hi"], cells=["a", "b", "c", "d"],
                           mean=np.array([[3.0, 0.0, -5.0, 9.0], [0.0, 2.9, -5.0, 9.0]]), sd=np.full((2, 4), 0.5))
    judged = np.ones((2, 4), dtype=bool)
    finished = np.array([True, True, True, False])
    # cell 0 picks target 0, cell 1 target 1 and is within 5% of cell 0 nowhere else: both kept; cell 3 (never run,
    # a contender) has no weights to drop
    assert unlikely_cells(post, judged, finished) == [2]
    judged[1, 1] = False  # cell 1 not judged on target 1: cell 0 picks both, cell 1 may beat it nowhere
    assert unlikely_cells(post, judged, finished) == [1, 2]


def test_a_pick_whose_weights_were_dropped_is_rerun_from_the_base_to_the_same_test(tmp_path, ray_local,
                                                                                   monkeypatch):
    """Every decision drops every finished run's weights (as if no cell could be a pick): the test round reruns the
    picks' seeds from the base and ends exactly as a grid trial of the same cell and seed."""
    from xlamaml.search.predictive import driver

    monkeypatch.setattr(driver, "unlikely_cells", lambda post, judged, finished: [int(c) for c in
                                                                                 np.flatnonzero(finished)])
    exp = Path(run_sweep(load_sweep(preset_path("smoke"), SETTINGS + ["sweep.predictive.max_share=0.5"]),
                         tmp_path / "runs", "dropped"))
    record = read_predictive(str(exp))
    assert record.finished() and any(d["weights_dropped"] for d in record.decisions)
    cell, seed = record.rounds[-1]["runs"][0]["cell"], record.seeds[record.rounds[-1]["runs"][0]["seed"]]
    mine = reports(exp, trial_folder(cell, seed))
    assert [r["training_iteration"] for r in mine] == list(range(1, len(mine) + 1))
    grid = run_sweep(load_sweep(preset_path("smoke"), [f"sweep.assignments.items=[{json.dumps(cell)}]",
                                                      f"sweep.seeds=[{seed}]"]), tmp_path / "runs", "grid")
    folder = next(d for d in Path(grid).iterdir() if (d / "params.json").is_file())
    final = reports(Path(grid), folder.name)[-1]
    keys = [k for k in final if k.startswith("test/")] + ["meta/query_loss", "meta/steps"]
    assert {k: final[k] for k in keys} == {k: mine[-1][k] for k in keys}


def test_when_every_run_errored_the_search_starts_again_elsewhere_or_ends_without_a_pick(tmp_path):
    from xlamaml.analysis.predictive_report import decision_line
    from xlamaml.search.predictive.driver import decide

    sw = load_sweep(preset_path("smoke"), SETTINGS)
    first = [{"cell": c, "seed": 0, "from": 0.0, "to": 1.0, "dev_at": [0.5, 1.0]} for c in CELLS[:2]]
    record = PredictiveRecord(CELLS, [{"assignment": "baseline", "seed": 0}], [0, 1], "acc", ["de", "hi"],
                              [0.5, 1.0], rounds=[{"runs": first, "test": False}],
                              spent=[{"failed": CELLS[:2]}])
    decide(str(tmp_path), record, sw, {})  # nothing to fit, and no file is read
    assert {r["cell"] for r in record.rounds[-1]["runs"]} == set(CELLS[2:]) and record.answer is None
    assert "a new first design" in decision_line({**record.decisions[-1], "grid_share": 0.0})
    record.spent.append({"failed": CELLS[2:]})
    decide(str(tmp_path), record, sw, {})
    assert record.rounds[-1] == {"test": True, "runs": []} and record.answer["targets"] == {}
    assert "every cell's run errored" in record.answer["stopped"]
