"""The config dataclass: YAML + --set overrides, one-line errors that name the key."""

import pytest

from xlamaml.trainables.config import ConfigError, RunConfig, config_from_dict, load_config, parse_overrides
from xlamaml.trainables.english_stage import english_stage_key
from xlamaml.trainables.tasks.registry import get_task


def test_defaults_are_the_papers_settings():
    cfg = load_config()
    assert (cfg.meta.k, cfg.meta.n, cfg.meta.inner_lr, cfg.meta.outer_lr, cfg.meta.weight_decay) == (8, 8, 1e-5, 1e-5, 0.01)
    assert (cfg.english.batch_size, cfg.english.lr, cfg.english.epochs, cfg.model.max_length) == (32, 2e-5, 3.0, 128)
    assert cfg.meta.steps_per_query_lang == 500 and len(cfg.eval.target_langs) == 15
    qa = load_config(None, ["task=mlqa"])
    assert qa.meta.steps_per_query_lang == 100 and qa.eval.target_langs == ["ar", "de", "en", "es", "hi", "vi", "zh"]


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: x-maml\nmeta:\n  query_langs: [de]\n  parallel: false\n  inner_lr: 1e-4\n")
    cfg = load_config(path, ["meta.k=4", "meta.n=4", "eval.target_langs=en,hi", "meta.first_order=true"])
    assert cfg.method == "x-maml" and cfg.meta.inner_lr == 1e-4 and cfg.meta.k == 4
    assert cfg.eval.target_langs == ["en", "hi"] and cfg.meta.first_order is True
    assert cfg.aux_langs == ["de"]


@pytest.mark.parametrize("overrides,needle", [
    (["meta.inner_lrr=1"], "unknown config key meta.inner_lrr"),
    (["bogus=1"], "unknown config key bogus"),
    (["meta.sampling=sometimes"], "meta.sampling: expected one of random, cover"),
    (["meta.k=two"], "meta.k: expected an integer"),
    (["meta.k=0"], "meta.k: expected a positive integer"),
    (["meta.query_langs=hi,xx"], "unknown language code 'xx'"),
    (["meta.query_langs=en"], "meta.query_langs: xla-maml needs query languages that differ"),
    (["meta.k=4"], "meta.k and meta.n must be equal"),
    (["method=x-maml"], "meta.parallel: x-maml"),
    (["meta.parallel=maybe"], "meta.parallel: expected true or false"),
    (["meta.outer_lr=-1"], "meta.outer_lr: expected a positive learning rate"),
    (["noequals"], "expected key=value"),
])
def test_bad_values_name_the_key(overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_bad_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: xla-maml\nmeta: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_english_stage_key_ignores_meta_settings():
    XNLI = get_task("xnli")
    a, b = RunConfig(), RunConfig()
    b.meta.inner_lr = 1.0
    assert english_stage_key(a, XNLI) == english_stage_key(b, XNLI)
    b.english.dev_max_examples = 10  # scoring size only: the trained weights are the same
    assert english_stage_key(a, XNLI) == english_stage_key(b, XNLI)
    b.english.lr = 1.0
    assert english_stage_key(a, XNLI) != english_stage_key(b, XNLI)


def test_aux_langs_leave_out_english_and_baseline_has_none():
    assert load_config(None, ["meta.query_langs=hi,de"]).aux_langs == ["de", "hi"]
    assert load_config(None, ["method=baseline"]).aux_langs == []
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


@pytest.mark.parametrize("values, key", [
    ({"meta": {"outer_lr": float("inf")}}, "meta.outer_lr"),
    ({"meta": {"inner_lr": float("nan")}}, "meta.inner_lr"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**70}, "seed"),
    ({"eval": {"target_langs": ["en", "en", "en", "de"]}}, "eval.target_langs"),
    ({"meta": {"query_langs": ["hi", "hi"]}}, "meta.query_langs"),
])
def test_values_the_run_cannot_use_are_refused_naming_the_key(values, key):
    with pytest.raises(ConfigError, match=rf"config key {key}: .*expected"):
        config_from_dict(values)


def test_a_config_file_that_is_not_utf8_is_one_line_naming_its_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"task: xnli\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.yaml:2: not UTF-8"):
        load_config(path)


@pytest.mark.parametrize("sets", [["model=tiny", "model.name=x"], ["model.name=x", "model=tiny"]])
def test_a_key_set_both_as_a_value_and_as_a_section_is_refused(sets):
    with pytest.raises(ConfigError, match=r"--set 'model.*expected either the section's keys or one value"):
        parse_overrides(sets)


def test_english_stage_key_follows_the_content_of_its_data(tmp_path, data_dir):
    import gzip
    import shutil
    from pathlib import Path

    copy, relabelled = tmp_path / "copy", tmp_path / "relabelled"
    for folder in (copy, relabelled):
        shutil.copytree(Path(data_dir) / "xnli", folder / "xnli")
    en = relabelled / "xnli" / "dev" / "en.tsv.gz"
    lines = gzip.decompress(en.read_bytes()).decode().splitlines(keepends=True)
    row = lines[1].rstrip("\n").split("\t")
    lines[1] = "\t".join(row[:-1] + [str((int(row[-1]) + 1) % 3)]) + "\n"  # one English label changed
    en.write_bytes(gzip.compress("".join(lines).encode()))
    xnli = get_task("xnli")
    keys = {name: english_stage_key(load_config(None, ["task=xnli", f"data.dir={folder}"]), xnli)
            for name, folder in (("shared", data_dir), ("copy", copy), ("relabelled", relabelled))}
    assert keys["copy"] == keys["shared"]  # the same rows elsewhere: the same stage
    assert keys["relabelled"] != keys["shared"]  # other rows under the same names: another stage
