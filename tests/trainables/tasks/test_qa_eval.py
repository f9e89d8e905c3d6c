"""MLQA EM/F1 as in the official mlqa_evaluation_v1.py: hand-computed cases per language, evaluate, the CLI."""

import gzip
import json
import os
import subprocess
import sys
from fractions import Fraction

import pytest

from xlamaml.trainables.paths import REPO_ROOT
from xlamaml.trainables.tasks.qa_eval import (evaluate, evaluate_examples, exact_match, f1, main, max_over_truths,
                                      normalize_answer, segment, tokens)


def scores(pred, gold, lang):
    return exact_match(pred, gold, lang), f1(pred, gold, lang)


# (prediction, gold, lang, expected normalised prediction, expected normalised gold, EM, F1) - all by hand.
CASES = [
    # en. 'the Eiffel Tower' -> 'the eiffel tower' -> drop 'the' -> 'eiffel tower'; 'Eiffel Tower!' -> drop '!'
    # -> 'eiffel tower'. Same -> EM 1, F1 1.
    ("the Eiffel Tower", "Eiffel Tower!", "en", "eiffel tower", "eiffel tower", 1, Fraction(1)),
    # 'A cat sat on the mat' -> drop a, the -> 'cat sat on mat' (4 tokens); gold 'cat on mat' (3).
    # common 3: P 3/4, R 1 -> F1 = 2*(3/4)/(7/4) = 6/7.
    ("A cat sat on the mat", "cat on mat", "en", "cat sat on mat", "cat on mat", 0, Fraction(6, 7)),
    # 'an' is dropped, 'Anthem' contains 'an' but \b keeps it -> 'anthem' both -> EM 1.
    ("an Anthem", "anthem", "en", "anthem", "anthem", 1, Fraction(1)),
    # '$' is in string.punctuation (category Sc) -> removed: '$100' -> '100'. EM 1.
    ("100", "$100", "en", "100", "100", 1, Fraction(1)),
    # '€' is a symbol (Sc), not ASCII -> kept: '€100' != '100', no shared token -> EM 0, F1 0.
    ("100", "€100", "en", "100", "€100", 0, Fraction(0)),
    # '-' is removed, not turned into a space: 'well-known' -> 'wellknown' vs 'well known' -> no overlap.
    ("well known", "well-known", "en", "well known", "wellknown", 0, Fraction(0)),
    # Counter overlap: 'the the cat cat cat' -> 'cat cat cat'; gold 'cat dog'. common min(3,1)=1:
    # P 1/3, R 1/2 -> F1 = 2*(1/6)/(5/6) = 2/5.
    ("the the cat cat cat", "cat dog", "en", "cat cat cat", "cat dog", 0, Fraction(2, 5)),
    # Empty prediction vs 'Paris' -> '' vs 'paris' -> EM 0, F1 0.
    ("", "Paris", "en", "", "paris", 0, Fraction(0)),
    # Both normalise to '' ('The' is an article): EM 1 but F1 0 (no shared token), as in the official script.
    ("", "The", "en", "", "", 1, Fraction(0)),
    # es. '¿La Casa Blanca?' -> '¿', '?' removed (Po) -> 'la casa blanca' -> drop 'la' -> 'casa blanca'. EM 1.
    ("¿La Casa Blanca?", "casa blanca", "es", "casa blanca", "casa blanca", 1, Fraction(1)),
    # '«El Niño»': '«' Pi, '»' Pf removed -> 'el niño' -> drop 'el' -> 'niño'. EM 1.
    ("«El Niño»", "niño", "es", "niño", "niño", 1, Fraction(1)),
    # 'los libros y las revistas' -> drop los, las -> 'libros y revistas'. EM 1.
    ("los libros y las revistas", "Libros y revistas", "es", "libros y revistas", "libros y revistas", 1, Fraction(1)),
    # 'del' is not in the list: 'del rey' (2 tokens) vs 'rey' (1): P 1/2, R 1 -> F1 2/3.
    ("del rey", "rey", "es", "del rey", "rey", 0, Fraction(2, 3)),
    # es articles un/unos/unas too: 'unos y unas' -> 'y'.
    ("unos y unas", "y", "es", "y", "y", 1, Fraction(1)),
    # de. '„Der Spiegel“': '„' Ps, '“' Pi removed -> 'der spiegel' -> drop 'der' -> 'spiegel'. EM 1.
    ("„Der Spiegel“", "Spiegel", "de", "spiegel", "spiegel", 1, Fraction(1)),
    # All twelve de articles dropped, in upper case too -> 'haus'. EM 1.
    ("ein eine einem einen einer eines der die das des dem DEN Haus", "Haus", "de", "haus", "haus", 1, Fraction(1)),
    # 'die' dropped -> 'bundesrepublik deutschland' (2) vs 'bundesrepublik' (1): P 1/2, R 1 -> F1 2/3.
    ("die Bundesrepublik Deutschland", "Bundesrepublik", "de", "bundesrepublik deutschland", "bundesrepublik",
     0, Fraction(2, 3)),
    # 'dessen' and 'denn' are not articles (\b around the whole word) -> kept.
    ("dessen denn", "dessen denn", "de", "dessen denn", "dessen denn", 1, Fraction(1)),
    # ar. '،' (U+060C, Po) removed; every 'ال' becomes a space: 'الولايات' -> ' ولايات', 'المتحدة' -> ' متحدة'
    # -> 'ولايات متحدة'; the gold has no 'ال' (و ل ا ي ا ت: 'لا' is not 'ال'). EM 1.
    ("الولايات المتحدة،", "ولايات متحدة", "ar", "ولايات متحدة", "ولايات متحدة", 1, Fraction(1)),
    # 'ال' inside a word goes too (the official regex is not anchored): 'قال' (ق ا ل) -> 'ق '. EM 1 with 'ق'.
    ("قال؟", "ق", "ar", "ق", "ق", 1, Fraction(1)),
    # 'جامعة القاهرة' -> 'جامعة قاهرة' (2) vs 'القاهرة' -> 'قاهرة' (1): P 1/2, R 1 -> F1 2/3.
    ("جامعة القاهرة", "القاهرة", "ar", "جامعة قاهرة", "قاهرة", 0, Fraction(2, 3)),
    # hi. Danda '।' (U+0964, Po) removed -> 'भारत'. EM 1.
    ("भारत।", "भारत", "hi", "भारत", "भारत", 1, Fraction(1)),
    # No articles in hi: 'एक' stays -> 'एक किताब' (2) vs 'किताब' (1): F1 2/3.
    ("एक किताब॥", "किताब", "hi", "एक किताब", "किताब", 0, Fraction(2, 3)),
    # Nor English ones: 'the taj' (2) vs 'taj' (1) -> F1 2/3.
    ("the Taj", "Taj", "hi", "the taj", "taj", 0, Fraction(2, 3)),
    # vi list is của/là/cái/chiếc/những: 'thủ đô của Việt Nam' -> 'thủ đô việt nam'. EM 1.
    ("thủ đô của Việt Nam", "Thủ đô Việt Nam", "vi", "thủ đô việt nam", "thủ đô việt nam", 1, Fraction(1)),
    # 'những chiếc xe' -> 'xe'; 'Hà Nội là thủ đô' -> 'hà nội thủ đô'.
    ("những chiếc xe", "xe", "vi", "xe", "xe", 1, Fraction(1)),
    ("Hà Nội là thủ đô", "hà nội thủ đô", "vi", "hà nội thủ đô", "hà nội thủ đô", 1, Fraction(1)),
    # 'các' is NOT in the official list: 'các nước' (2) vs 'nước' (1) -> F1 2/3.
    ("các nước", "nước", "vi", "các nước", "nước", 0, Fraction(2, 3)),
    # 'Lào' contains 'là' but no word boundary after it -> kept.
    ("Lào", "lào", "vi", "lào", "lào", 1, Fraction(1)),
    # zh. '。' (U+3002, Po) removed; each CJK char a token: '北 京' both. EM 1.
    ("北京。", "北京", "zh", "北 京", "北 京", 1, Fraction(1)),
    # '《》' (Ps/Pe) removed; whitespace between CJK chars does not matter.
    ("《红楼 梦》", "红楼梦", "zh", "红 楼 梦", "红 楼 梦", 1, Fraction(1)),
    # '2019年9月' -> ['2019','年','9','月'] (4) vs ['2019','年'] (2): common 2, P 1/2, R 1 -> F1 2/3.
    ("2019年9月", "2019年", "zh", "2019 年 9 月", "2019 年", 0, Fraction(2, 3)),
    # Latin runs stay whole and are lower-cased: 'iPhone 11发布' -> 'iphone 11 发 布' (4) vs 'iPhone发布'
    # -> 'iphone 发 布' (3): common 3, P 3/4, R 1 -> F1 6/7.
    ("iPhone 11发布", "iPhone发布", "zh", "iphone 11 发 布", "iphone 发 布", 0, Fraction(6, 7)),
    # '中华人民共和国' (7 chars) vs '人民共和国' (5): common 5, P 5/7, R 1 -> F1 = (10/7)/(12/7) = 5/6.
    ("中华人民共和国", "人民共和国", "zh", "中 华 人 民 共 和 国", "人 民 共 和 国", 0, Fraction(5, 6)),
    # Only U+4E00..U+9FA5 split per character: U+9FA6 (just past it) pairs stay one token, U+9FA5 pairs split.
    ("\u9fa6\u9fa6", "\u9fa5\u9fa5", "zh", "\u9fa6\u9fa6", "\u9fa5 \u9fa5", 0, Fraction(0)),
    # zh has no articles: 'the 书' -> 'the 书' (2) vs '书' (1): F1 2/3.
    ("the 书", "书", "zh", "the 书", "书", 0, Fraction(2, 3)),
]


@pytest.mark.parametrize("pred,gold,lang,norm_pred,norm_gold,em,f1_exact", CASES)
def test_hand_computed_scores(pred, gold, lang, norm_pred, norm_gold, em, f1_exact):
    assert normalize_answer(pred, lang) == norm_pred
    assert normalize_answer(gold, lang) == norm_gold
    got_em, got_f1 = scores(pred, gold, lang)
    assert got_em == em
    assert got_f1 == pytest.approx(float(f1_exact), abs=1e-15)


def test_max_over_several_golds():
    pred, golds = "New York City", ["York", "New York", "Boston"]
    # vs 'york': P 1/3, R 1 -> 1/2; vs 'new york': P 2/3, R 1 -> (4/3)/(5/3) = 4/5; vs 'boston': 0 -> max 4/5.
    assert max_over_truths(f1, pred, golds, "en") == pytest.approx(0.8)
    assert max_over_truths(exact_match, pred, golds, "en") == 0.0
    # Adding 'New York City.' (-> 'new york city') makes EM 1 and F1 1.
    assert max_over_truths(exact_match, pred, golds + ["New York City."], "en") == 1.0
    assert max_over_truths(f1, pred, golds + ["New York City."], "en") == 1.0
    with pytest.raises(ValueError, match="no gold answers"):
        max_over_truths(f1, pred, [], "en")


def test_tokens_and_mixed_segmentation():
    # Mixed segmentation on raw text: CJK chars and punctuation are single tokens, other runs whitespace-split.
    assert segment("你好,world! 2019年", "zh") == ["你", "好", ",", "world", "!", "2019", "年"]
    assert segment("abc中def", "zh") == ["abc", "中", "def"]
    assert segment("你好, world", "en") == ["你好,", "world"]
    assert tokens("Apple公司, 2019年！", "zh") == ["apple", "公", "司", "2019", "年"]
    assert tokens("  The  U.S.  ", "en") == ["us"]


def test_unknown_language_is_a_one_line_error():
    for call in (lambda: normalize_answer("x", "fr"), lambda: f1("x", "x", "fr"),
                 lambda: evaluate_examples({"q": ["x"]}, {"q": "x"}, "fr")):
        with pytest.raises(ValueError) as err:
            call()
        msg = str(err.value)
        assert "'fr'" in msg and "ar de en es hi vi zh" in msg and "\n" not in msg


def _dataset():
    return [
        {"title": "one", "paragraphs": [{"context": "...", "qas": [
            {"id": "q1", "question": "?", "answers": [{"text": "Eiffel Tower", "answer_start": 0}]},
            {"id": "q2", "question": "?", "answers": [{"text": "cat on mat", "answer_start": 0}]},
            {"id": "q3", "question": "?", "answers": [{"text": "Paris", "answer_start": 0}]},
        ]}]},
        {"title": "two", "paragraphs": [{"context": "...", "qas": [
            {"id": "q4", "question": "?", "answers": [{"text": "York", "answer_start": 0},
                                                       {"text": "New York", "answer_start": 0}]},
        ]}]},
    ]


PREDICTIONS = {"q1": "the Eiffel Tower", "q2": "a cat sat on the mat", "q4": "New York City", "other": "x"}
# q1: EM 1, F1 1; q2: EM 0, F1 6/7; q3 unanswered: 0, 0; q4: EM 0, F1 4/5. 4 questions ('other' is ignored).
# EM = 100 * 1/4 = 25; F1 = 100 * (1 + 6/7 + 4/5) / 4 = 100 * (93/35) / 4 = 9300/140 = 465/7 = 66.43.
EXPECTED = {"exact_match": 25.0, "f1": 465 / 7}


def test_evaluate_counts_an_unanswered_question_as_zero(capsys):
    got = evaluate(_dataset(), PREDICTIONS, "en")
    assert got["exact_match"] == 25.0 and got["f1"] == pytest.approx(465 / 7)
    assert capsys.readouterr().err == "Unanswered question q3 will receive score 0.\n"
    golds = {qa["id"]: [a["text"] for a in qa["answers"]]
             for art in _dataset() for par in art["paragraphs"] for qa in par["qas"]}
    assert evaluate_examples(golds, PREDICTIONS, "en") == got
    with pytest.raises(ValueError, match="no questions"):
        evaluate_examples({}, {}, "en")


# --- command line ----------------------------------------------------------------------------------------------

def _write(path, obj, gz=False):
    data = json.dumps({"version": "1.0", "data": obj} if isinstance(obj, list) else obj).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def _cli(capsys, *args):
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name,gz", [("dev.json", False), ("dev.json.gz", True), ("dev.json", True)])
def test_cli_plain_and_gzip(tmp_path, capsys, name, gz):
    # ("dev.json", True): gzip without the suffix, found by its magic bytes.
    ds, preds = _write(tmp_path / name, _dataset(), gz), _write(tmp_path / "p.json", PREDICTIONS)
    rc, out, err = _cli(capsys, ds, preds, "en")
    assert rc == 0 and json.loads(out) == pytest.approx(EXPECTED)
    assert "Unanswered question q3" in err


def test_cli_as_a_module(tmp_path):
    ds, preds = _write(tmp_path / "d.json", _dataset()), _write(tmp_path / "p.json", PREDICTIONS)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run([sys.executable, "-m", "xlamaml.trainables.tasks.qa_eval", ds, preds, "en"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == pytest.approx(EXPECTED) and list(json.loads(run.stdout)) == ["exact_match", "f1"]


def test_cli_version_mismatch_is_only_a_warning(tmp_path, capsys):
    ds = _write(tmp_path / "d.json", {"version": "2.0", "data": _dataset()})
    preds = _write(tmp_path / "p.json", PREDICTIONS)
    rc, out, err = _cli(capsys, ds, preds, "en")
    assert rc == 0 and json.loads(out) == pytest.approx(EXPECTED)
    assert "warning" in err and "1.0" in err and "'2.0'" in err


@pytest.mark.parametrize("case", ["missing", "not-json", "bad-gzip", "no-data", "data-list-top", "preds-list",
                                  "pred-not-text", "no-answers", "language"])
def test_cli_bad_input_is_a_one_line_error(tmp_path, capsys, case):
    ds, preds = _write(tmp_path / "d.json", _dataset()), _write(tmp_path / "p.json", PREDICTIONS)
    lang, named = "en", ds
    if case == "missing":
        ds = named = str(tmp_path / "nope.json")
    elif case == "not-json":
        (tmp_path / "d.json").write_text("{not json")
    elif case == "bad-gzip":
        ds = named = str(tmp_path / "d.json.gz")
        (tmp_path / "d.json.gz").write_text("{}")
    elif case == "no-data":
        _write(tmp_path / "d.json", {"version": "1.0", "articles": []})
    elif case == "data-list-top":
        (tmp_path / "d.json").write_text(json.dumps(_dataset()))
    elif case == "preds-list":
        preds = named = _write(tmp_path / "p.json", ["x"])
    elif case == "pred-not-text":
        preds = named = _write(tmp_path / "p.json", {"q1": 3})
    elif case == "no-answers":
        _write(tmp_path / "d.json", [{"paragraphs": [{"qas": [{"id": "q9", "answers": []}]}]}])
    elif case == "language":
        lang, named = "fr", "'fr'"
    rc, out, err = _cli(capsys, ds, preds, lang)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and named in err and "expected" in err


# --- the real MLQA data ------------------------------------------------------------------------------------------

def _real(data_dir, lang):
    path = os.path.join(data_dir, "mlqa", "dev", f"dev-context-{lang}-question-{lang}.json.gz")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)["data"]
    return data, [qa for art in data for par in art["paragraphs"] for qa in par["qas"]]


def test_real_zh_dev_first_gold_scores_100_and_empty_scores_0(data_dir):
    data, qas = _real(data_dir, "zh")
    assert len(qas) == 504
    assert evaluate(data, {qa["id"]: qa["answers"][0]["text"] for qa in qas}, "zh") == {
        "exact_match": 100.0, "f1": 100.0}
    assert evaluate(data, {qa["id"]: "" for qa in qas}, "zh") == {"exact_match": 0.0, "f1": 0.0}


def test_real_es_dev_gold_that_is_only_an_article_gets_f1_zero(data_dir):
    # One es dev gold answer is just 'una' -> normalises to '' -> EM 1 but F1 0 even for a perfect prediction,
    # so F1 = 100 * 499/500 = 99.8 while EM = 100 (the official script gives the same).
    data, qas = _real(data_dir, "es")
    got = evaluate(data, {qa["id"]: qa["answers"][0]["text"] for qa in qas}, "es")
    assert len(qas) == 500 and got == {"exact_match": 100.0, "f1": 100.0 * 499 / 500}
