"""English-stage data: the XNLI en-dev fallback, local MNLI files, the hub path, subsets, errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import datasets
import pytest

from xlamaml.trainables.data import DataError, load_english_nli
from xlamaml.trainables.paths import default_data_dir

SHARED = Path(default_data_dir())
needs_shared = pytest.mark.usefixtures("data_dir")  # fails loudly when the shared data is missing
COLUMNS = ["uid", "lang", "premise", "hypothesis", "label"]
TSV_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
              "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n")


def write(path: Path, text: str) -> Path:
    """Write `text` to `path` (gzip when the name ends in .gz) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(rows: list[dict]) -> str:
    """Return rows as JSON lines."""
    return "".join(json.dumps(r) + "\n" for r in rows)


MNLI_ROWS = [
    {"pairID": "1e", "sentence1": "A dog runs.", "sentence2": "An animal moves.", "gold_label": "entailment",
     "genre": "fiction"},
    {"pairID": "2x", "sentence1": "A dog runs.", "sentence2": "Unclear.", "gold_label": "-"},
    {"pairID": "3c", "sentence1": "A dog runs.", "sentence2": "The dog sleeps.", "gold_label": "contradiction"},
    {"pairID": "4n", "sentence1": "A dog runs.", "sentence2": "It is a puppy.", "gold_label": "neutral"},
]


def tsv_row(i: int, s1: str, s2: str, gold: str) -> str:
    """Return one GLUE MNLI train.tsv row."""
    return f"{i}\t{i}\t{i}n\tfiction\t( x )\t( y )\t(ROOT x)\t(ROOT y)\t{s1}\t{s2}\t{gold}\t{gold}\n"


@needs_shared
def test_auto_falls_back_to_xnli_english_dev() -> None:
    ds, desc = load_english_nli("auto")
    assert len(ds) == 2490 and ds.column_names == COLUMNS and set(ds["lang"]) == {"en"}
    assert "XNLI" in desc and "no MNLI" in desc and "2,490" in desc
    same, desc2 = load_english_nli("xnli-en-dev")
    assert same["uid"] == ds["uid"] and "XNLI" in desc2


@pytest.mark.parametrize("name", ["train.jsonl", "train.jsonl.gz"])
def test_auto_prefers_local_mnli_jsonl(tmp_path: Path, name: str) -> None:
    write(tmp_path / "mnli" / name, jsonl(MNLI_ROWS) + "\n")  # a trailing blank line is fine in jsonl
    ds, desc = load_english_nli("auto", data_dir=str(tmp_path))
    assert ds.to_dict() == {
        "uid": ["1e", "3c", "4n"], "lang": ["en"] * 3, "premise": ["A dog runs."] * 3,
        "hypothesis": ["An animal moves.", "The dog sleeps.", "It is a puppy."], "label": [0, 2, 1],
    }
    assert "jsonl" in desc and str(tmp_path / "mnli" / name) in desc and "1 with gold_label '-'" in desc


def test_glue_tsv_file_and_folder(tmp_path: Path) -> None:
    text = TSV_HEADER + tsv_row(0, 'He said "hi', "They spoke.", "entailment") + tsv_row(1, "x", "y", "-") \
        + tsv_row(2, "A cat.", "", "neutral") + tsv_row(3, "A cat.", "A dog.", "contradiction")
    path = write(tmp_path / "glue" / "train.tsv.gz", text)
    ds, desc = load_english_nli(str(path))
    assert ds["uid"] == ["0n", "3n"] and ds["label"] == [0, 2]
    assert ds["premise"][0] == 'He said "hi'  # quotes are text, not csv quoting
    assert "1 with gold_label '-'" in desc and "1 with an empty sentence" in desc
    ds2, _ = load_english_nli(str(tmp_path / "glue"))  # a folder holding train.tsv.gz
    assert ds2.to_dict() == ds.to_dict()


def test_tsv_with_integer_label_column(tmp_path: Path) -> None:
    path = write(tmp_path / "mnli.tsv", "idx\tsentence1\tsentence2\tlabel\n7\ta\tb\t2\n8\tc\td\t1\n")
    ds, _ = load_english_nli(str(path))
    assert ds.to_dict() == {"uid": ["7", "8"], "lang": ["en", "en"], "premise": ["a", "c"],
                            "hypothesis": ["b", "d"], "label": [2, 1]}


def test_subset_is_deterministic(tmp_path: Path) -> None:
    rows = [{"pairID": str(i), "sentence1": f"p{i}", "sentence2": f"h{i}", "gold_label": "neutral"}
            for i in range(200)]
    path = write(tmp_path / "train.jsonl", jsonl(rows))
    a, desc = load_english_nli(str(path), max_examples=20, seed=1)
    b, _ = load_english_nli(str(path), max_examples=20, seed=1)
    c, _ = load_english_nli(str(path), max_examples=20, seed=2)
    assert len(a) == 20 and a.to_dict() == b.to_dict() and a["uid"] != c["uid"]
    assert a["uid"] == sorted(a["uid"], key=int)  # the subset keeps the file's order
    assert "random subset of 200, seed 1" in desc and "20 pairs" in desc
    full, _ = load_english_nli(str(path), max_examples=1000)
    assert len(full) == 200


def test_hub_is_chosen_and_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_load_dataset(name, config=None, split=None, **kwargs):
        calls.append((name, config, split))
        n = 50
        return datasets.Dataset.from_dict({"premise": [f"p{i}" for i in range(n)],
                                           "hypothesis": [f"h{i}" for i in range(n)],
                                           "label": [i % 3 for i in range(n)], "idx": list(range(n))})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds, desc = load_english_nli("mnli-hub", max_examples=10, seed=3)
    assert calls == [("nyu-mll/glue", "mnli", "train")]
    assert ds.column_names == COLUMNS and len(ds) == 10 and set(ds["lang"]) == {"en"}
    assert all(ds["premise"][k] == f"p{ds['uid'][k]}" and ds["label"][k] == int(ds["uid"][k]) % 3
               for k in range(10))
    assert "nyu-mll/glue" in desc and "subset of 50" in desc
    again, _ = load_english_nli("mnli-hub", max_examples=10, seed=3)
    assert again["uid"] == ds["uid"]


@pytest.mark.parametrize(
    "name, text, line, expected",
    [
        ("train.jsonl", '{"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}\n{"sentence1": \n', 2,
         "one JSON object per line"),
        ("train.jsonl", '{"sentence1": "a", "gold_label": "neutral"}\n', 1, "keys sentence1, sentence2"),
        ("train.jsonl", '[1, 2]\n', 1, "one JSON object per line"),
        ("train.jsonl.gz", '{"sentence1": "a", "sentence2": "b", "gold_label": "maybe"}\n', 1,
         "entailment, neutral, contradiction"),
        ("train.tsv", "sentence1\tsentence2\n", 1, "gold_label or label"),
        ("train.tsv", "sentence1\tsentence2\tgold_label\na\tb\n", 2, "3, as in the header"),
        ("train.tsv", "sentence1\tsentence2\tgold_label\na\tb\t-\n", None, "at least one labelled pair"),
        ("train.csv", "sentence1,sentence2\n", None, ".jsonl[.gz] or .tsv[.gz]"),
    ],
    ids=["bad-json", "missing-key", "not-object", "bad-label", "no-label-column", "fields", "all-skipped",
         "file-type"],
)
def test_errors_are_one_line(tmp_path: Path, name: str, text: str, line: int | None, expected: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(DataError) as exc:
        load_english_nli(str(path))
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:{line}:" if line else f"{path}:"), msg
    assert "; expected " in msg and expected in msg.split("; expected ", 1)[1], msg


def test_missing_source_and_bad_max_examples(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_english_nli(str(tmp_path / "nope.jsonl"))
    msg = str(exc.value)
    assert msg.startswith(f"{tmp_path / 'nope.jsonl'}:") and "expected 'auto', 'mnli-hub', 'xnli-en-dev'" in msg
    with pytest.raises(DataError) as exc:
        load_english_nli(str(tmp_path))  # a folder without train.{jsonl,tsv}[.gz]
    assert str(exc.value).startswith(f"{tmp_path}:") and "train.jsonl" in str(exc.value)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DataError, match="expected a positive integer or None"):
            load_english_nli(str(tmp_path / "nope.jsonl"), max_examples=bad)
