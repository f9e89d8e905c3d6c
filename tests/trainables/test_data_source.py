"""Which rows an encoded set holds: `limit` from a start row, SetKey names, and eval.dev_offset on the shared XNLI."""

import pytest
from datasets import Dataset

from xlamaml.cli import PRESETS
from xlamaml.trainables.config import load_config
from xlamaml.trainables.data.subset import limit
from xlamaml.trainables.data_source import SetKey, TokenizingSource, needed_sets
from xlamaml.trainables.errors import ConfigError
from xlamaml.trainables.models import load_tokenizer
from xlamaml.trainables.tasks.registry import get_task


def test_limit_takes_rows_from_a_start_and_refuses_one_past_the_end():
    ds = Dataset.from_dict({"i": list(range(10))})
    assert limit(ds, None) is ds and limit(ds, 10) is ds  # every row: the set itself, as before
    assert limit(ds, 3)["i"] == [0, 1, 2]
    assert limit(ds, 3, start=5)["i"] == [5, 6, 7]
    assert limit(ds, 30, start=8)["i"] == [8, 9]
    assert limit(ds, None, start=4)["i"] == list(range(4, 10))
    with pytest.raises(ValueError, match="10 rows has none from row 10 on"):
        limit(ds, 3, start=10)


def test_a_set_from_row_zero_keeps_its_name_and_a_later_start_gets_its_own():
    assert SetKey("dev", "de", 200).file_name == "dev-de-200-eval.npz"  # the names existing data assets hold
    assert SetKey("dev", "de", 200, start=500).file_name == "dev-de-from500-200-eval.npz"


def test_dev_offset_moves_the_dev_reports_off_the_meta_pools_rows():
    cfg = load_config(PRESETS / "smoke.yaml", ["eval.dev_offset=500", "eval.dev_max_examples=7"])
    task = get_task(cfg.task)
    keys = needed_sets(cfg, task)
    reports = [k for k in keys if k.split == "dev" and not k.train]
    assert reports and all(k.start == 500 and k.max_examples == 7 for k in reports)
    assert all(k.start == 0 for k in keys if k.train)  # the meta pools still start at the first pair
    source = TokenizingSource(cfg, task, load_tokenizer(cfg.model))
    lang = cfg.dev_langs[0]
    data = task.load(cfg, "dev", [lang])[lang]
    enc = source.get(reports[0])
    assert list(enc.labels) == list(data["label"][500:507])
    assert list(source.sets("dev", [lang], 7, start=500)[lang].labels) == list(data["label"][500:507])


def test_a_dev_offset_past_the_data_names_the_key():
    cfg = load_config(PRESETS / "smoke.yaml", ["eval.dev_offset=100000"])
    task = get_task(cfg.task)
    key = next(k for k in needed_sets(cfg, task) if k.split == "dev" and not k.train)
    with pytest.raises(ConfigError, match=r"eval.dev_offset 100000: dev \w+: a data set of \d+ rows has none"):
        TokenizingSource(cfg, task, load_tokenizer(cfg.model)).get(key)


def test_dev_offset_must_not_be_negative():
    with pytest.raises(ConfigError, match="dev_offset"):
        load_config(PRESETS / "smoke.yaml", ["eval.dev_offset=-1"])
