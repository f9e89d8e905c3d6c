"""XNLI readers: the shared data, the official XNLI-1.0 format, the hub path, and one-line errors."""

from __future__ import annotations

import gzip
import re
import time
from collections import Counter
from pathlib import Path

import datasets
import pytest

from xlamaml.trainables.data import DataError, load_xnli, xnli_langs_available
from xlamaml.trainables.languages import XNLI_LANGS
from xlamaml.trainables.paths import default_data_dir

SHARED = Path(default_data_dir())
needs_shared = pytest.mark.usefixtures("data_dir")  # fails loudly when the shared data is missing
COLUMNS = ["uid", "lang", "premise", "hypothesis", "label"]
HEADER = "id\tpremise\thypothesis\tlabel\n"
OFFICIAL_HEADER = "language\tgold_label\tsentence1_binary_parse\tsentence1\tsentence2\tpromptID\tpairID\tgenre\n"


def write(path: Path, text: str) -> Path:
    """Write `text` to `path` (gzip when the name ends in .gz) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def layout(tmp_path: Path, split: str = "dev", **files: str) -> Path:
    """Return a folder in the shared layout holding `<split>/<name>` for each name (dots as '__')."""
    for name, text in files.items():
        write(tmp_path / split / name.replace("__", "."), text)
    return tmp_path


def assert_one_line_error(exc: pytest.ExceptionInfo, path: Path | str, line: int | None, expected: str) -> None:
    """Check the DataError names the file, the line and the expectation, on one line."""
    msg = str(exc.value)
    assert "\n" not in msg
    loc = f"{path}:{line}:" if line is not None else f"{path}:"
    assert msg.startswith(loc), msg
    assert re.search(r"; expected .*" + re.escape(expected), msg), msg


# --- the real shared data ---------------------------------------------------------------------------


@needs_shared
def test_shared_counts_all_languages() -> None:
    dev = load_xnli("auto", "dev", list(XNLI_LANGS))
    test = load_xnli("auto", "test", list(XNLI_LANGS))
    assert list(dev) == list(XNLI_LANGS) and list(test) == list(XNLI_LANGS)
    assert {len(d) for d in dev.values()} == {2490}
    assert {len(d) for d in test.values()} == {5010}
    for lang in ("en", "hi", "sw", "zh"):
        assert Counter(dev[lang]["label"]) == {0: 830, 1: 830, 2: 830}
        assert Counter(test[lang]["label"]) == {0: 1670, 1: 1670, 2: 1670}
        assert set(dev[lang]["lang"]) == {lang}
    assert dev["en"].column_names == COLUMNS
    assert dev["en"].features["label"].dtype == "int64" and dev["en"].features["uid"].dtype == "string"


@needs_shared
def test_shared_uids_are_aligned_across_languages() -> None:
    dev = load_xnli("auto", "validation", ["en", "hi"])  # "validation" is the dev split
    en, hi = dev["en"], dev["hi"]
    assert en["uid"] == hi["uid"] == [str(i) for i in range(2490)]
    by_uid = dict(zip(hi["uid"], hi["label"]))
    assert all(by_uid[u] == label for u, label in zip(en["uid"], en["label"]))
    assert en[0]["premise"] == "And he said, Mama, I'm home."
    assert en[0]["premise"] != hi[0]["premise"]


@needs_shared
def test_shared_explicit_folder_and_data_dir_and_cache() -> None:
    a = load_xnli(str(SHARED / "xnli"), "test", ["sw"])["sw"]
    b = load_xnli("auto", "test", ["sw"], data_dir=str(SHARED))["sw"]
    assert a["uid"] == b["uid"] and a["premise"] == b["premise"]
    # A caller changing the format of its copy must not change what the next caller gets.
    a.set_format("numpy")
    assert load_xnli("auto", "test", ["sw"])["sw"].format["type"] is None
    assert xnli_langs_available("auto", "dev") == list(XNLI_LANGS)


@needs_shared
def test_shared_load_is_fast() -> None:
    start = time.perf_counter()
    load_xnli("auto", "test", list(XNLI_LANGS))
    assert time.perf_counter() - start < 5.0  # cached or not, a couple of seconds at most


# --- the per-language layout from hand-made files ----------------------------------------------------

ROWS = HEADER + "0\tA man eats. \tSomeone eats.\t0\n1\tA man eats.\tNobody eats.\t2\n2\tA man eats.\tHe is hungry.\t1\n"


def test_plain_and_gz_give_the_same_rows(tmp_path: Path) -> None:
    plain = load_xnli(str(layout(tmp_path / "p", en__tsv=ROWS)), "dev", ["en"])["en"]
    gz = load_xnli(str(layout(tmp_path / "g", en__tsv__gz=ROWS)), "dev", ["en"])["en"]
    assert plain.to_dict() == gz.to_dict()
    assert plain.to_dict() == {
        "uid": ["0", "1", "2"], "lang": ["en"] * 3,
        "premise": ["A man eats. ", "A man eats.", "A man eats."],  # text as is, trailing space kept
        "hypothesis": ["Someone eats.", "Nobody eats.", "He is hungry."], "label": [0, 2, 1],
    }


def test_crlf_file_and_auto_data_dir(tmp_path: Path) -> None:
    write(tmp_path / "xnli" / "test" / "de.tsv", ROWS.replace("\n", "\r\n"))
    ds = load_xnli("auto", "test", ["de"], data_dir=str(tmp_path))["de"]
    assert ds["hypothesis"][2] == "He is hungry." and ds["lang"][0] == "de"
    assert xnli_langs_available("auto", "test", data_dir=str(tmp_path)) == ["de"]


def test_changed_file_is_read_again(tmp_path: Path) -> None:
    root = layout(tmp_path, en__tsv=ROWS)
    assert len(load_xnli(str(root), "dev", ["en"])["en"]) == 3
    write(root / "dev" / "en.tsv", ROWS + "3\tOne more.\tAnother.\t1\n")
    assert len(load_xnli(str(root), "dev", ["en"])["en"]) == 4


# --- the official XNLI-1.0 format -------------------------------------------------------------------

OFFICIAL = OFFICIAL_HEADER + "".join(
    f"{lang}\t{gold}\t( x )\t{lang} premise {i}\t{lang} hypothesis {i}\t{i // 3}\t{i}\tfiction\n"
    for i, gold in enumerate(["entailment", "neutral", "contradiction"])
    for lang in ("en", "fr", "hi")
)


@pytest.mark.parametrize("name", ["xnli.dev.tsv", "xnli.dev.tsv.gz"])
def test_official_round_trip(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, OFFICIAL)
    for source in (str(tmp_path), str(path)):  # the folder or the file itself
        out = load_xnli(source, "dev", ["fr", "en"])
        assert list(out) == ["fr", "en"]
        assert out["fr"].to_dict() == {
            "uid": ["0", "1", "2"], "lang": ["fr"] * 3, "premise": [f"fr premise {i}" for i in range(3)],
            "hypothesis": [f"fr hypothesis {i}" for i in range(3)], "label": [0, 1, 2],
        }
        assert out["en"]["uid"] == out["fr"]["uid"]
    assert xnli_langs_available(str(tmp_path), "dev") == ["en", "fr", "hi"]


def test_official_unpacked_zip_folder_and_wrong_split(tmp_path: Path) -> None:
    write(tmp_path / "XNLI-1.0" / "xnli.test.tsv", OFFICIAL)
    assert len(load_xnli(str(tmp_path), "test", ["hi"])["hi"]) == 3
    with pytest.raises(DataError) as exc:
        load_xnli(str(tmp_path / "XNLI-1.0" / "xnli.test.tsv"), "dev", ["hi"])
    assert_one_line_error(exc, tmp_path / "XNLI-1.0" / "xnli.test.tsv", None, "xnli.dev.tsv")


def test_official_errors(tmp_path: Path) -> None:
    bad_label = write(tmp_path / "a" / "xnli.dev.tsv", OFFICIAL.replace("\tneutral\t", "\tmaybe\t", 1))
    with pytest.raises(DataError) as exc:
        load_xnli(str(bad_label), "dev", ["en"])
    assert_one_line_error(exc, bad_label, 5, "entailment, neutral or contradiction")

    no_col = write(tmp_path / "b" / "xnli.dev.tsv", OFFICIAL.replace("pairID", "pair_id", 1))
    with pytest.raises(DataError) as exc:
        load_xnli(str(no_col), "dev", ["en"])
    assert_one_line_error(exc, no_col, 1, "pairID")

    short = write(tmp_path / "c" / "xnli.dev.tsv", OFFICIAL + "en\tneutral\tonly three\n")
    with pytest.raises(DataError) as exc:
        load_xnli(str(short), "dev", ["en"])
    assert_one_line_error(exc, short, 11, "8, as in the header")

    no_lang = write(tmp_path / "d" / "xnli.dev.tsv", OFFICIAL)
    with pytest.raises(DataError) as exc:
        load_xnli(str(no_lang), "dev", ["sw"])
    assert_one_line_error(exc, no_lang, None, "language column is sw")


# --- errors in the per-language layout ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("id\tpremise\thypo\tlabel\n0\ta\tb\t0\n", 1, "header 'id\\tpremise\\thypothesis\\tlabel'"),
        ("", 1, "header"),
        (HEADER + "0\ta\tb\t0\n1\ta\tb\n", 3, "4 (id, premise, hypothesis, label)"),
        (HEADER + "0\ta\tb\t0\n1\ta\tb\t3\n", 3, "0, 1 or 2"),
        (HEADER + "0\ta\tb\tneutral\n", 2, "0, 1 or 2"),
        (HEADER + "0\ta\tb\t0\n1\t \tb\t0\n", 3, "a non-empty premise"),
        (HEADER + "0\ta\t\t0\n", 2, "a non-empty hypothesis"),
        (HEADER + "0\ta\tb\t0\n0\ta\tc\t1\n", 3, "each id once"),
        (HEADER, None, "at least one sentence pair"),
    ],
    ids=["header", "empty-file", "fields", "label-3", "label-word", "empty-premise", "empty-hypothesis",
         "duplicate-id", "no-rows"],
)
def test_layout_errors(tmp_path: Path, text: str, line: int | None, expected: str) -> None:
    path = write(tmp_path / "dev" / "en.tsv.gz", text)
    with pytest.raises(DataError) as exc:
        load_xnli(str(tmp_path), "dev", ["en"])
    assert_one_line_error(exc, path, line, expected)


def test_missing_files_say_what_was_looked_for(tmp_path: Path) -> None:
    layout(tmp_path, en__tsv=ROWS)
    with pytest.raises(DataError) as exc:
        load_xnli(str(tmp_path), "dev", ["en", "fr"])
    msg = str(exc.value)
    assert msg.startswith(f"{tmp_path / 'dev' / 'fr.tsv'}:") and "fr.tsv.gz" in msg
    assert "expected" in msg and "xnli.{dev,test}.tsv" in msg and "<lang>.tsv" in msg

    with pytest.raises(DataError) as exc:
        load_xnli(str(tmp_path), "test", ["en"])  # no test/ folder and no xnli.test.tsv
    msg = str(exc.value)
    assert msg.startswith(f"{tmp_path}:") and f"{tmp_path / 'test'}" in msg and "xnli.test.tsv" in msg

    with pytest.raises(DataError) as exc:
        load_xnli(str(tmp_path / "nowhere"), "dev", ["en"])
    assert_one_line_error(exc, tmp_path / "nowhere", None, "<lang>.tsv")


def test_argument_errors(tmp_path: Path) -> None:
    layout(tmp_path, en__tsv=ROWS)
    with pytest.raises(DataError) as exc:
        load_xnli(str(tmp_path), "dev", ["en", "xx"])
    assert_one_line_error(exc, tmp_path, None, "one of ar bg")
    assert "'xx'" in str(exc.value)
    with pytest.raises(DataError) as exc:
        load_xnli(str(tmp_path), "train", ["en"])
    assert_one_line_error(exc, tmp_path, None, "dev, validation or test")
    assert isinstance(exc.value, ValueError)


def test_bad_gzip_and_bad_utf8(tmp_path: Path) -> None:
    gz = tmp_path / "a" / "dev" / "en.tsv.gz"
    gz.parent.mkdir(parents=True)
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError) as exc:
        load_xnli(str(tmp_path / "a"), "dev", ["en"])
    assert_one_line_error(exc, gz, None, "gzip")

    raw = tmp_path / "b" / "dev" / "en.tsv"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(HEADER.encode() + b"0\ta\xff\tb\t0\n")
    with pytest.raises(DataError) as exc:
        load_xnli(str(tmp_path / "b"), "dev", ["en"])
    assert_one_line_error(exc, raw, 2, "UTF-8")


# --- the hub path (never downloads) -------------------------------------------------------------------


def test_hub_is_chosen_and_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_load_dataset(name, config=None, split=None, **kwargs):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict(
            {"premise": [f"{config} p0", f"{config} p1"], "hypothesis": ["h0", "h1"], "label": [2, 0]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    out = load_xnli("hub", "dev", ["hi", "en"])
    assert calls == [("facebook/xnli", "hi", "validation"), ("facebook/xnli", "en", "validation")]
    assert out["hi"].to_dict() == {"uid": ["0", "1"], "lang": ["hi", "hi"], "premise": ["hi p0", "hi p1"],
                                   "hypothesis": ["h0", "h1"], "label": [2, 0]}
    load_xnli("hub", "test", ["sw"])
    assert calls[-1] == ("facebook/xnli", "sw", "test")
