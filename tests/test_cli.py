"""`xlamaml run` / `xlamaml finetune` end to end on the shared XNLI data with the tiny model."""

import json

import pytest
import torch
import yaml

from xlamaml.cli import main
from xlamaml.trainables.tasks.outcomes import read_outcomes


def run_cli(*args):
    return main(["-q", *args])


def test_smoke_run_writes_metrics_config_and_predictions(tmp_path, cache, data_dir):
    out = tmp_path / "run"
    assert run_cli("run", "--config", "smoke", "--set", f"data.dir={data_dir}", "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for lang in ("en", "de", "hi"):
        assert 0.0 <= metrics[f"test/{lang}/acc"] <= 1.0
        assert len((out / "predictions" / f"test-{lang}.tsv").read_text().splitlines()) == 48
        # Per-pair outcomes beside them: their mean is the reported accuracy.
        uids, values = read_outcomes(out / "predictions" / f"test-{lang}.items.tsv")
        assert len(set(uids)) == 48 and values["acc"].mean() == pytest.approx(metrics[f"test/{lang}/acc"])
    assert metrics["test/avg/acc"] == pytest.approx(sum(metrics[f"test/{lang}/acc"] for lang in ("en", "de", "hi")) / 3)
    assert metrics["test/avg_excl_aux/acc"] == pytest.approx((metrics["test/en/acc"] + metrics["test/de/acc"]) / 2)
    assert metrics["meta/steps"] == 4
    assert metrics["english_stage_key"] in metrics["base_checkpoint"]  # which base: the key of its config and data
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["meta"]["query_langs"] == ["hi"] and resolved["model"]["name"] == "tiny"
    # The English stage was built once into the cache, under its config hash.
    assert len(list((cache / "base").iterdir())) == 1


@pytest.mark.parametrize("overrides", [
    ["method=baseline"],
    ["method=x-maml", "meta.query_langs=de", "meta.parallel=false", "meta.sampling=random"],
    ["meta.support_langs=de", "meta.query_langs=hi", "meta.first_order=true", "meta.inner_steps=2",
     "few_shot.enabled=true", "eval.target_langs=de,hi"],
])
def test_methods_and_few_shot_run(tmp_path, cache, overrides):
    sets = [a for o in overrides for a in ("--set", o)]
    out = tmp_path / "run"
    assert run_cli("run", "--config", "smoke", *sets, "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test/avg_excl_aux/acc" in metrics
    assert ("meta/steps" in metrics) == ("method=baseline" not in overrides)


def test_baseline_scores_the_base_checkpoint_itself(tmp_path, cache):
    base = tmp_path / "base"
    assert run_cli("finetune", "--config", "smoke", "--out", str(base)) == 0
    stage = json.loads((base / "metrics.json").read_text())
    out = tmp_path / "baseline"
    assert run_cli("run", "--config", "smoke", "--set", "method=baseline", "--set", f"base_checkpoint={base}",
                   "--set", "eval.target_langs=en", "--set", "eval.max_examples=48", "--out", str(out)) == 0
    # English-stage test accuracy (first 48 en test pairs) equals the baseline run's en accuracy.
    assert json.loads((out / "metrics.json").read_text())["test/en/acc"] == pytest.approx(stage["test/en/acc"])


def test_finetune_reuses_a_finished_stage(tmp_path, cache, capsys):
    out = tmp_path / "base"
    assert run_cli("finetune", "--config", "smoke", "--out", str(out)) == 0
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert run_cli("finetune", "--config", "smoke", "--out", str(out)) == 0
    assert (out / "metrics.json").stat().st_mtime_ns == stamp
    # Another English config must not silently reuse (or overwrite) that directory.
    assert run_cli("finetune", "--config", "smoke", "--set", "english.lr=0.5", "--out", str(out)) == 2
    assert "holds an English stage of another config" in capsys.readouterr().err


@pytest.mark.parametrize("args,needle", [
    (["--set", "meta.sampling=often"], "meta.sampling: expected one of random, cover"),
    (["--set", "meta.colour=red"], "unknown config key meta.colour"),
    (["--set", "meta.inner_lrr=0.1"], "unknown config key meta.inner_lrr; did you mean meta.inner_lr?"),
    (["--set", "data.xnli=/nonexistent/xnli"], "/nonexistent/xnli"),
    (["--set", "model.name=/no/such/dir"], "/no/such/dir: model directory not found"),
    (["--set", "model.name=no-such-org/no-such-model"], "model 'no-such-org/no-such-model': cannot be loaded"),
    pytest.param(["--set", "device=cuda"], "config key device: cuda was asked for",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_bad_input_is_a_one_line_error(tmp_path, cache, capsys, args, needle):
    assert run_cli("run", "--config", "smoke", *args, "--out", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xlamaml: error:") and needle in err and "\n" not in err


def test_unknown_preset_lists_the_presets(tmp_path, capsys):
    assert run_cli("run", "--config", "nosuch", "--out", str(tmp_path)) == 2
    assert "smoke" in capsys.readouterr().err
    assert run_cli("run", "--config", "smok", "--out", str(tmp_path)) == 2
    assert "did you mean smoke?" in capsys.readouterr().err


def test_version_and_presets_describe_the_tool(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("xlamaml ")
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("smoke ") and "tiny random BERT" in line for line in lines)
    assert all(len(line) <= 130 for line in lines)


def test_prior_ranks_every_target_before_anything_runs(tmp_path, capsys):
    assert run_cli("prior", "--preset", "map-en-aux", "--top", "2") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["ar", "de", "es", "hi", "ru", "sw", "th", "tr", "ur", "zh"]
    assert "en>ur" in lines[3].split(",")[0]  # Urdu is Hindi's closest language in URIEL+
    gains = tmp_path / "gains.csv"
    gains.write_text("target,cell,gain\nar,xla-maml:en>de,2.0\nde,xla-maml:en>hi,3.0\nhi,xla-maml:en>de,oops\n")
    assert run_cli("prior", "--preset", "map-en-aux", "--ranker", "other-targets", "--gains", str(gains)) == 2
    err = capsys.readouterr().err
    assert "gains.csv: line 4" in err and "\n" not in err.strip()


@pytest.mark.parametrize("overrides", [[], ["few_shot.enabled=true", "meta.first_order=true"]])
def test_qa_run_reports_em_and_f1_and_writes_official_predictions(tmp_path, cache, overrides):
    sets = [a for o in overrides for a in ("--set", o)]
    out = tmp_path / "qa"
    assert run_cli("run", "--config", "smoke-qa", *sets, "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for lang in ("en", "de", "hi"):
        assert 0.0 <= metrics[f"test/{lang}/em"] <= metrics[f"test/{lang}/f1"] <= 100.0
        preds = json.loads((out / "predictions" / f"test-{lang}.json").read_text())
        assert len(preds) == 16 and all(isinstance(v, str) for v in preds.values())
        uids, values = read_outcomes(out / "predictions" / f"test-{lang}.items.tsv")
        assert set(uids) == set(preds) and values["f1"].mean() == pytest.approx(metrics[f"test/{lang}/f1"])
        assert values["em"].mean() == pytest.approx(metrics[f"test/{lang}/em"])
    assert metrics["test/avg_excl_aux/f1"] == pytest.approx((metrics["test/en/f1"] + metrics["test/de/f1"]) / 2)


def test_qa_gxlt_matrix_covers_every_pair_and_its_diagonal_is_the_test_score(tmp_path, cache):
    out = tmp_path / "gxlt"
    assert run_cli("run", "--config", "smoke-qa", "--set", "eval.gxlt=true", "--set", "method=baseline",
                   "--set", "eval.target_langs=[en,hi,zh]", "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    pairs = {k.split("/")[1] for k in metrics if k.startswith("gxlt/")}
    assert pairs == {f"{c}-{q}" for c in ("en", "hi", "zh") for q in ("en", "hi", "zh")}
    for lang in ("en", "hi", "zh"):  # a same-language pair is the same-language test set
        assert metrics[f"gxlt/{lang}-{lang}/f1"] == pytest.approx(metrics[f"test/{lang}/f1"])
    assert run_cli("run", "--config", "smoke", "--set", "eval.gxlt=true", "--out", str(tmp_path / "x")) == 2


def test_run_refuses_an_earlier_runs_folder_unless_forced(tmp_path, cache, capsys):
    out = tmp_path / "run"
    base = ["run", "--config", "smoke", "--set", "eval.target_langs=en,de", "--out", str(out)]
    assert run_cli(*base) == 0
    stale = out / "predictions" / "test-hi.tsv"  # as if an earlier run had scored hi too
    stale.write_text("stale\n")
    before = (out / "metrics.json").read_text()
    assert run_cli(*base) == 2
    assert "not empty" in capsys.readouterr().err and (out / "metrics.json").read_text() == before
    assert run_cli(*base, "--force") == 0
    assert not stale.exists() and sorted(p.name for p in (out / "predictions").glob("test-*.tsv")) == [
        "test-de.items.tsv", "test-de.tsv", "test-en.items.tsv", "test-en.tsv"]


@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "a/b", "..", ".hidden", ""])
def test_a_sweep_name_is_a_plain_name(tmp_path, name, capsys):
    storage = tmp_path / "storage"
    assert run_cli("sweep", "--config", "smoke", "--storage", str(storage), "--name", name) == 2
    assert "expected a plain name" in capsys.readouterr().err
    assert not storage.exists() and [p.name for p in tmp_path.iterdir()] == ["storage"] * storage.exists()


def test_a_local_sweep_asking_for_more_cpus_than_exist_is_one_line_before_anything_runs(tmp_path, capsys):
    storage = tmp_path / "storage"
    assert run_cli("sweep", "--config", "smoke", "--storage", str(storage), "--name", "big",
                   "--set", "sweep.cpus_per_trial=4096") == 2
    err = capsys.readouterr().err
    assert "config key sweep.cpus_per_trial: 4096 asked for" in err and len(err.strip().splitlines()) == 1
    assert not (storage / "big" / "xlamaml_sweep.json").exists() and not (storage / "big" / "assets").exists()


def test_a_loss_that_becomes_nan_stops_the_run_naming_the_stage_and_caches_nothing(tmp_path, cache, capsys):
    assert run_cli("run", "--config", "smoke", "--set", "meta.outer_lr=1e6", "--set", "meta.steps_per_query_lang=20",
                   "--out", str(tmp_path / "meta")) == 2
    assert "meta stage: query loss nan at meta step" in capsys.readouterr().err
    assert not (tmp_path / "meta" / "metrics.json").exists()
    stages = set((cache / "base").iterdir()) if (cache / "base").is_dir() else set()
    assert run_cli("run", "--config", "smoke", "--set", "english.lr=1e8", "--out", str(tmp_path / "english")) == 2
    assert "English stage: loss nan at step" in capsys.readouterr().err
    assert (set((cache / "base").iterdir()) if (cache / "base").is_dir() else set()) == stages  # nothing cached


def test_a_missing_target_file_is_named_before_any_stage_runs(tmp_path, data_dir, capsys):
    import shutil
    from pathlib import Path

    data = tmp_path / "data"
    shutil.copytree(Path(data_dir) / "xnli", data / "xnli")
    (data / "xnli" / "test" / "de.tsv.gz").unlink()
    assert run_cli("run", "--config", "smoke", "--set", f"data.dir={data}", "--set", "eval.target_langs=en,de",
                   "--out", str(tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "de" in err and "xnli" in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "run").glob("metrics.json"))
