"""The sweep parsed once: its run config, cells and adaptive schedule have one owner (search/spec.py) that the
planner, the asset preparation and the adaptive driver all read; `sweep.space` keys are checked against what the
driver prepares, derived from the code that builds the data."""

import pytest
import yaml

import xlamaml.trainables.config as config_module
from benchmarks.sim_methods import sim_rungs
from xlamaml.search.predictive.simulated import Cost, Noise
from xlamaml.cli import preset_path
from xlamaml.search.adaptive.driver import new_record
from xlamaml.search.plan.counts import plan_counts
from xlamaml.search.spec import load_sweep
from xlamaml.search.sweep_assets import trial_configs
from xlamaml.trainables.errors import ConfigError


def test_the_run_config_is_parsed_once_per_sweep(monkeypatch):
    parsed = []
    real = config_module.build_dataclass

    def counting(cls, values, prefix):
        if cls is config_module.RunConfig:
            parsed.append(values)
        return real(cls, values, prefix)

    monkeypatch.setattr(config_module, "build_dataclass", counting)
    sw = load_sweep(preset_path("smoke"), ["sweep.mode=adaptive"])
    assert len(parsed) == 1  # the preset's run config, once
    # Everything the driver derives from the sweep reads that parse (trial configs are parsed per trial, from the
    # run config merged with their cell: other dicts).
    trials = trial_configs(sw)
    plan_counts(sw, "grid"), plan_counts(sw, "adaptive"), new_record(sw), sw.grid_cells, sw.rungs, sw.dev_langs
    assert not [values for values in parsed[1:] if values is sw.run]
    assert len(parsed) > len(trials)  # the counter saw the trials' own parses


@pytest.mark.parametrize("preset", ["smoke", "pairs-adaptive"])
def test_the_schedule_is_computed_once_and_read_by_the_planner_and_the_driver(preset):
    sw = load_sweep(preset_path(preset), ["sweep.mode=adaptive"])
    assert sw.rungs is sw.rungs  # computed once
    record = new_record(sw, plan_counts(sw, "grid").to_dict())
    assert record.rungs == sw.rungs
    counts = plan_counts(sw, "adaptive")
    assert [(r.index, r.cells, r.seeds) for r in counts.rungs] == [(r.index, r.cells, len(r.seeds)) for r in sw.rungs]
    assert record.grid == plan_counts(sw, "grid").to_dict()
    assert record.dev_langs == sw.cfg.dev_langs
    # The simulator runs the same schedule for a map of this sweep's shape (its seeds are numbered 0, 1, ...).
    simulated = sim_rungs(sw.sweep.adaptive, len(sw.cells), len(sw.dev_langs),
                          Cost(total_steps=sw.cfg.meta.total_steps),
                          Noise(dev_items=sw.cfg.eval.dev_max_examples, seeds=len(sw.sweep.seeds)))
    assert [(r.index, r.steps, r.dev_items, len(r.seeds), r.cells) for r in simulated] == \
        [(r.index, r.steps, r.dev_items, len(r.seeds), r.cells) for r in sw.rungs]


def preset_with_space(tmp_path, space: dict) -> str:
    """Return a copy of the smoke preset whose sweep is an Optuna search over `space`."""
    values = yaml.safe_load(preset_path("smoke").read_text())
    values.setdefault("sweep", {}).update({"mode": "optuna", "num_samples": 2, "space": space})
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_a_space_over_what_the_data_depends_on_is_refused_up_front(tmp_path):
    # meta.max_examples sizes the episode pools the driver tokenizes: a hand-kept list once forgot it.
    with pytest.raises(ConfigError, match=r"sweep\.space\.meta\.max_examples: changes the data"):
        load_sweep(preset_with_space(tmp_path, {"meta.max_examples": {"choice": [8, 16]}}))
    with pytest.raises(ConfigError, match=r"sweep\.space\.eval\.dev_max_examples: changes the data"):
        load_sweep(preset_with_space(tmp_path, {"eval.dev_max_examples": {"randint": [8, 16]}}))


def test_a_space_over_learning_rates_is_accepted(tmp_path):
    sw = load_sweep(preset_with_space(tmp_path, {"meta.inner_lr": {"loguniform": [1.0e-5, 1.0e-3]},
                                                 "meta.outer_lr": {"choice": [1.0e-5, 3.0e-5]}}))
    assert set(sw.sweep.space) == {"meta.inner_lr", "meta.outer_lr"}


def test_a_bad_value_in_a_space_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"sweep\.space\.meta\.inner_steps: the value -1"):
        load_sweep(preset_with_space(tmp_path, {"meta.inner_steps": {"choice": [1, -1]}}))


@pytest.mark.parametrize("key", ["sweep.grid=[1,2]", "sweep.space=[1]"])
def test_a_grid_or_space_that_is_not_a_mapping_is_one_line(key):
    with pytest.raises(ConfigError, match=rf"config key {key.split('=')[0]}: expected a mapping"):
        load_sweep(preset_path("smoke"), [key])


def test_a_full_disk_before_the_sweep_started_suggests_the_same_command_not_a_resume(tmp_path, monkeypatch):
    from xlamaml.experiment import records
    from xlamaml.experiment.storage import StorageFullError
    from xlamaml.search import sweep as sweep_module

    def full(*args, **kwargs):
        raise StorageFullError(f"{tmp_path}/x: cannot write, no space left on the device ([Errno 28]); free space, "
                               f"then run again (a sweep: `xlamaml sweep --resume --name NAME`)")

    monkeypatch.setattr(sweep_module, "prepare_assets", full)
    with pytest.raises(StorageFullError, match=r"run the same `xlamaml sweep` command again") as err:
        sweep_module.run_sweep(load_sweep(preset_path("smoke")), tmp_path / "runs", "full")
    assert "--resume" not in str(err.value) and not records.sweep_recorded(str(tmp_path / "runs" / "full"))


def test_a_storage_too_small_for_the_sweep_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    from xlamaml.experiment import records
    from xlamaml.experiment.storage import StorageFullError
    from xlamaml.search.faults import full_storage
    from xlamaml.search.sweep import run_sweep

    monkeypatch.setattr(full_storage, "free_bytes", lambda location: 1000)
    exp = tmp_path / "runs" / "small"
    with pytest.raises(StorageFullError, match=r"0.0 MB free, this sweep's assets and its 3 trial\(s\)"):
        run_sweep(load_sweep(preset_path("smoke")), tmp_path / "runs", "small")
    assert not records.sweep_recorded(str(exp)) and not (exp / "assets").exists()
