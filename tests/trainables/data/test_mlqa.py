"""MLQA / SQuAD readers: the shared dev data, the official MLQA_V1 layout, the held-out split, errors, hub paths."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import datasets
import pytest

from xlamaml.trainables.data.errors import DataError
from xlamaml.trainables.data.mlqa import heldout_split, load_mlqa, load_mlqa_pair, load_squad
from xlamaml.trainables.languages import MLQA_LANGS

needs_shared = pytest.mark.usefixtures("data_dir")  # fails loudly when the shared data is missing
COLUMNS = ["uid", "lang", "article", "title", "context", "question", "answers"]
DEV_COUNTS = {"en": 1148, "ar": 517, "de": 512, "es": 500, "hi": 507, "vi": 511, "zh": 504}


@pytest.fixture(scope="module")
def dev(data_dir) -> dict[str, datasets.Dataset]:
    return load_mlqa("auto", "dev", list(MLQA_LANGS), data_dir)


def write(path: Path, obj) -> Path:
    """Write `obj` as JSON (or a str as is) to `path`, gzip when the name ends in .gz; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def squad_doc(lang: str = "en", answer_start: int = 4, qa_extra: dict | None = None) -> dict:
    """Return a small SQuAD v1.1 document: two articles, three contexts, four questions."""
    qa = {"id": "q1", "question": f"{lang}: who?", "answers": [{"text": "Ada", "answer_start": answer_start}]}
    qa.update(qa_extra or {})
    return {"version": "1.0", "data": [
        {"title": f"{lang} One", "paragraphs": [
            {"context": "Hi, Ada wrote it.", "qas": [qa, {"id": "q2", "question": "what?",
                                                           "answers": [{"text": "it", "answer_start": 14}]}]},
            {"context": "Then Bob came.", "qas": [{"id": "q3", "question": "who came?",
                                                  "answers": [{"text": "Bob", "answer_start": 5}]}]}]},
        {"title": f"{lang} Two", "paragraphs": [
            {"context": "Cy won 3 times.", "qas": [{"id": "q4", "question": "how often?",
                                                   "answers": [{"text": "3 times", "answer_start": 7}]}]}]},
    ]}


def assert_one_line_error(exc: pytest.ExceptionInfo, where: Path | str, *parts: str) -> None:
    """Check the DataError starts with `where`, is one line, and its text holds every part."""
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{where}:"), msg
    assert "; expected " in msg, msg
    for part in parts:
        assert part in msg, msg


# --- the real shared data ---------------------------------------------------------------------------


@needs_shared
def test_shared_dev_counts_and_columns(dev) -> None:
    assert {lang: len(ds) for lang, ds in dev.items()} == DEV_COUNTS
    for lang, ds in dev.items():
        assert ds.column_names == COLUMNS
        assert set(ds["lang"]) == {lang}
        assert len(set(ds["uid"])) == len(ds)


@needs_shared
def test_shared_every_answer_start_points_at_its_text(dev) -> None:
    for ds in dev.values():
        for context, answers in zip(ds["context"], ds["answers"]):
            assert answers["text"] and len(answers["text"]) == len(answers["answer_start"])
            for text, start in zip(answers["text"], answers["answer_start"]):
                assert context[start : start + len(text)] == text


@needs_shared
def test_shared_question_ids_are_the_parallel_key(dev) -> None:
    en = {r["uid"]: r for r in dev["en"]}
    hi = {r["uid"]: r for r in dev["hi"]}
    shared = set(en) & set(hi)
    assert len(shared) == 507  # every Hindi question has its English counterpart
    for uid in sorted(shared)[:50]:
        assert en[uid]["answers"]["text"] and hi[uid]["answers"]["text"]
        assert en[uid]["question"] != hi[uid]["question"] and en[uid]["context"] != hi[uid]["context"]


@needs_shared
def test_shared_gxlt_pair(dev, data_dir) -> None:
    pair = load_mlqa_pair("auto", "dev", "en", "hi", data_dir)
    en = {r["uid"]: r for r in dev["en"]}
    hi = {r["uid"]: r for r in dev["hi"]}
    assert set(pair["uid"]) == set(en) & set(hi)
    for row in pair:  # English contexts and answers, Hindi questions; `lang` is the context language
        assert row["lang"] == "en"
        assert row["context"] == en[row["uid"]]["context"] and row["answers"] == en[row["uid"]]["answers"]
        assert row["question"] == hi[row["uid"]]["question"]
    en_questions = load_mlqa("auto", "validation", ["de", "zh"], data_dir, question_langs="en")
    assert {k: len(v) for k, v in en_questions.items()} == {"de": 512, "zh": 504}
    assert set(en_questions["zh"]["lang"]) == {"zh"}


@needs_shared
def test_shared_has_no_test_split(data_dir) -> None:
    with pytest.raises(DataError) as exc:
        load_mlqa("auto", "test", ["en"], data_dir)
    assert_one_line_error(exc, Path(data_dir) / "mlqa" / "test" / "test-context-en-question-en.json",
                          "test-context-en-question-en.json.gz", "MLQA_V1 layout")


@needs_shared
def test_shared_heldout_split_by_article(dev) -> None:
    for lang, ds in dev.items():
        train, held = heldout_split(ds, 0.2, seed=0)
        assert len(train) + len(held) == len(ds)
        assert set(train["uid"]) | set(held["uid"]) == set(ds["uid"])
        assert not set(train["context"]) & set(held["context"])
        assert not set(train["article"]) & set(held["article"])
        assert 0.1 * len(ds) < len(held) < 0.35 * len(ds)  # a hash of each article: about the fraction
        again = heldout_split(ds, 0.2, seed=0)[1]
        assert again["uid"] == held["uid"]
        assert heldout_split(ds, 0.2, seed=1)[1]["uid"] != held["uid"]
    # Parallel questions mostly land on the same side (measured: 95% for en-hi, 88-99% across pairs).
    sides = {}
    for lang in ("en", "hi"):
        train, held = heldout_split(dev[lang], 0.2, seed=0)
        sides[lang] = {**{u: "train" for u in train["uid"]}, **{u: "held" for u in held["uid"]}}
    shared = set(sides["en"]) & set(sides["hi"])
    assert sum(sides["en"][u] == sides["hi"][u] for u in shared) >= 0.9 * len(shared)


# --- the official layout from hand-made files -----------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_official_layout_round_trip(tmp_path: Path, suffix: str) -> None:
    root = tmp_path / "MLQA_V1"
    write(root / "dev" / f"dev-context-de-question-de{suffix}", squad_doc("de"))
    write(root / "test" / f"test-context-de-question-en{suffix}", squad_doc("en"))
    for source in (root, tmp_path):  # the MLQA_V1 folder or its parent
        ds = load_mlqa(str(source), "dev", ["de"])["de"]
        assert ds.column_names == COLUMNS
        assert ds.to_dict() == {
            "uid": ["q1", "q2", "q3", "q4"], "lang": ["de"] * 4,
            "article": ["de One", "de One", "de One", "de Two"], "title": ["de One", "de One", "de One", "de Two"],
            "context": ["Hi, Ada wrote it.", "Hi, Ada wrote it.", "Then Bob came.", "Cy won 3 times."],
            "question": ["de: who?", "what?", "who came?", "how often?"],
            "answers": [{"text": ["Ada"], "answer_start": [4]}, {"text": ["it"], "answer_start": [14]},
                        {"text": ["Bob"], "answer_start": [5]}, {"text": ["3 times"], "answer_start": [7]}],
        }
        pair = load_mlqa_pair(str(source), "test", "de", "en")
        assert pair["question"][0] == "en: who?" and set(pair["lang"]) == {"de"}


def test_heldout_split_small_set_keeps_articles_whole(tmp_path: Path) -> None:
    ds = load_mlqa(str(write(tmp_path / "dev" / "dev-context-en-question-en.json", squad_doc()).parents[1]),
                   "dev", ["en"])["en"]
    for seed in range(5):
        train, held = heldout_split(ds, 0.5, seed)
        assert len(train) and len(held)  # two articles: one on each side, whatever the hash says
        assert sorted(map(sorted, (train["article"], held["article"]))) in (
            [["en One"] * 3, ["en Two"]], [["en Two"], ["en One"] * 3])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        heldout_split(ds, 1.0, 0)


def test_squad_local_file_folder_and_gz(tmp_path: Path) -> None:
    plain = write(tmp_path / "a" / "train-v1.1.json", squad_doc())
    gz = write(tmp_path / "b" / "dev-v1.1.json.gz", squad_doc())
    a = load_squad(str(plain))
    assert a.to_dict() == load_squad(str(tmp_path / "b"), split="dev").to_dict()
    assert a.to_dict() == load_squad(str(gz)).to_dict()
    assert set(a["lang"]) == {"en"} and a.column_names == COLUMNS
    write(tmp_path / "squad" / "train-v1.1.json", squad_doc())
    assert len(load_squad("auto", data_dir=str(tmp_path))) == 4
    with pytest.raises(DataError) as exc:
        load_squad("auto", data_dir=str(tmp_path), split="validation")
    assert_one_line_error(exc, tmp_path / "squad", "dev-v1.1.json", "or 'hub'")


# --- errors ---------------------------------------------------------------------------------------------


def mlqa_file(tmp_path: Path, content, name: str = "dev-context-en-question-en.json") -> Path:
    return write(tmp_path / "dev" / name, content)


@pytest.mark.parametrize(
    "content, parts",
    [
        ('{"data": [', ("not JSON", "SQuAD v1.1 JSON")),
        ({"version": "1.0"}, ("no 'data' list", "SQuAD v1.1 JSON")),
        ({"data": {"title": "x"}}, ("no 'data' list",)),
        (squad_doc(qa_extra={"id": None}), ("data[0].paragraphs[0].qas[0] has no 'id'", "non-empty string id")),
        (squad_doc(qa_extra={"answers": []}), ("question 'q1' has no answers list", "at least one answer")),
        (squad_doc(qa_extra={"answers": [{"text": "Ada"}]}), ("question 'q1'", '"answer_start": int')),
        (squad_doc(answer_start=3), ("question 'q1': answer 'Ada' at answer_start 3", "context there reads ' Ad'",
                                     "answer_start to point at the answer text")),
        (squad_doc(qa_extra={"id": "q2"}), ("question id 'q2' twice", "each question id once")),
        ({"data": []}, ("no questions",)),
    ],
    ids=["not-json", "no-data", "data-not-list", "no-id", "no-answers", "answer-no-start", "bad-start",
         "duplicate-id", "empty"],
)
def test_file_errors_are_one_line(tmp_path: Path, content, parts) -> None:
    path = mlqa_file(tmp_path, content)
    with pytest.raises(DataError) as exc:
        load_mlqa(str(tmp_path), "dev", ["en"])
    assert_one_line_error(exc, path.resolve(), *parts)


def test_truncated_gzip(tmp_path: Path) -> None:
    path = mlqa_file(tmp_path, squad_doc(), "dev-context-en-question-en.json.gz")
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError) as exc:
        load_mlqa(str(tmp_path), "dev", ["en"])
    assert_one_line_error(exc, path.resolve(), "unreadable gzip data", "a complete gzip file")


def test_missing_file_names_the_paths_and_layout(tmp_path: Path) -> None:
    mlqa_file(tmp_path, squad_doc())
    with pytest.raises(DataError) as exc:
        load_mlqa(str(tmp_path), "dev", ["en", "vi"])
    want = tmp_path / "dev" / "dev-context-vi-question-vi.json"
    assert_one_line_error(exc, want, "no MLQA dev file for context vi, question vi",
                          str(tmp_path / "MLQA_V1" / "dev" / "dev-context-vi-question-vi.json.gz"),
                          "{dev,test}/{split}-context-<c>-question-<q>.json[.gz]")
    with pytest.raises(DataError) as exc:
        load_mlqa(str(tmp_path / "nowhere"), "dev", ["en"])
    assert_one_line_error(exc, tmp_path / "nowhere" / "dev" / "dev-context-en-question-en.json", "no such folder")


def test_unknown_language_and_split(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_mlqa(str(tmp_path), "dev", ["en", "fr"])
    assert_one_line_error(exc, tmp_path, "unknown language code 'fr'", "one of ar de en es hi vi zh")
    with pytest.raises(DataError) as exc:
        load_mlqa(str(tmp_path), "dev", ["en"], question_langs="sw")
    assert_one_line_error(exc, tmp_path, "'sw'")
    with pytest.raises(DataError) as exc:
        load_mlqa_pair(str(tmp_path), "train", "en", "de")
    assert_one_line_error(exc, tmp_path, "split 'train'", "dev, validation or test")


# --- the hub paths (never downloaded: datasets.load_dataset is replaced) -------------------------------------


def fake_hub(calls: list, with_title: bool):
    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        rows = {"id": ["a1", "a2"], "context": ["Ada wrote it.", "Ada wrote it."], "question": ["who?", "what?"],
                "answers": [{"text": ["Ada"], "answer_start": [0]}, {"text": ["it", "it"], "answer_start": [10, 10]}]}
        if with_title:
            rows["title"] = ["T", "T"]
        return datasets.Dataset.from_dict(rows)
    return load_dataset


def test_mlqa_hub_is_chosen(monkeypatch) -> None:
    calls: list = []
    monkeypatch.setattr(datasets, "load_dataset", fake_hub(calls, with_title=False))
    out = load_mlqa("hub", "dev", ["hi", "en"])
    pair = load_mlqa_pair("hub", "test", "de", "zh")
    assert calls == [("facebook/mlqa", "mlqa.hi.hi", "validation"), ("facebook/mlqa", "mlqa.en.en", "validation"),
                     ("facebook/mlqa", "mlqa.de.zh", "test")]
    assert out["hi"].column_names == COLUMNS and out["hi"]["lang"] == ["hi", "hi"]
    assert out["hi"]["answers"][1] == {"text": ["it", "it"], "answer_start": [10, 10]}
    # No title on the hub: the context is the group, so both questions share one article key.
    assert len(set(pair["article"])) == 1 and pair["title"] == ["", ""]


def test_squad_hub_is_chosen(monkeypatch) -> None:
    calls: list = []
    monkeypatch.setattr(datasets, "load_dataset", fake_hub(calls, with_title=True))
    ds = load_squad("hub")
    load_squad("hub", split="dev")
    assert calls == [("rajpurkar/squad", None, "train"), ("rajpurkar/squad", None, "validation")]
    assert ds["article"] == ["T", "T"] and ds["lang"] == ["en", "en"]
