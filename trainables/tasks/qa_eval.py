"""MLQA answer scores (exact match and token F1), behaving exactly like MLQA's official `mlqa_evaluation_v1.py`.

The reference is `mlqa_evaluation_v1.py` in github.com/facebookresearch/MLQA (Lewis et al., ACL 2020). Scores
depend on how both answers are normalised, so every rule below follows that script, quirks included:

* order: lower-case, then drop punctuation, then drop articles, then re-tokenise and join with single spaces;
* punctuation: every character whose Unicode category starts with "P", plus Python's `string.punctuation`
  (which adds the ASCII symbols ``$ + < = > ^ ` | ~``; non-ASCII symbols such as "€" stay);
* articles (regexes applied after punctuation removal, each match replaced by a space):
  en `\\b(a|an|the)\\b`; es `\\b(un|una|unos|unas|el|la|los|las)\\b`;
  de `\\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\\b`; vi `\\b(của|là|cái|chiếc|những)\\b`;
  ar `\\sال^|ال` (the first branch can never match, so every "ال", even inside a word, becomes a space);
  hi and zh: none;
* tokens: whitespace split, except zh: each character in U+4E00..U+9FA5 is its own token and runs of anything
  else are whitespace-split ("mixed segmentation");
* F1 is 0 when no token is shared (so two answers that both normalise to "" get EM 1 but F1 0);
* a question with no prediction scores 0 and a note goes to stderr; the totals are percentages.

Command line, the official script's interface: `python -m xlamaml.trainables.tasks.qa_eval DATASET PREDICTIONS LANG`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import string
import sys
import unicodedata
import zlib
from collections import Counter
from typing import Callable, Iterable, Sequence

from xlamaml.trainables.languages import MLQA_LANGS

EXPECTED_VERSION = "1.0"  # the dataset version the official script expects (it only warns on others)

# Article patterns per answer language; None = the language has no articles to drop.
ARTICLE_PATTERNS: dict[str, str | None] = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    # Kept as the official regex: `^` after two consumed characters never matches, so in effect this
    # replaces every "ال" anywhere in the text (not only the prefix) with a space.
    "ar": r"\sال^|ال",
    "hi": None,
    "zh": None,
}
_ARTICLES = {lang: re.compile(p) if p else None for lang, p in ARTICLE_PATTERNS.items()}
# Languages cut by "mixed segmentation"; all others are split on whitespace.
MIXED_SEGMENTATION_LANGS: tuple[str, ...] = ("zh",)
_ASCII_PUNCT = frozenset(string.punctuation)
# The official script's CJK test is this exact range (not the whole CJK block, nor its extensions).
_CJK_FIRST, _CJK_LAST = "\u4e00", "\u9fa5"

assert tuple(sorted(ARTICLE_PATTERNS)) == tuple(sorted(MLQA_LANGS))


def _check_lang(lang: str) -> None:
    if lang not in ARTICLE_PATTERNS:
        raise ValueError(f"unknown MLQA answer language {lang!r}; expected one of {' '.join(MLQA_LANGS)}")


def is_punctuation(ch: str) -> bool:
    """Return whether the character counts as punctuation (Unicode category P*, or ASCII string.punctuation)."""
    # Same set as the official one, built over every code point below sys.maxunicode: the one code point it
    # leaves out (U+10FFFF) is unassigned, so testing the category per character is equivalent and cheaper.
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
    return _CJK_FIRST <= ch <= _CJK_LAST


def segment(text: str, lang: str) -> list[str]:
    """Return the text cut into tokens: whitespace split, or for zh the official mixed segmentation."""
    _check_lang(lang)
    if lang not in MIXED_SEGMENTATION_LANGS:
        return text.split()
    out: list[str] = []
    run = ""  # characters since the last CJK character or punctuation mark
    for ch in text:
        # Punctuation is a token of its own here too (normalize_answer has removed it before this runs).
        if _is_cjk(ch) or is_punctuation(ch):
            out.extend(run.split())
            run = ""
            out.append(ch)
        else:
            run += ch
    out.extend(run.split())
    return out


def normalize_answer(text: str, lang: str) -> str:
    """Return the answer lower-cased, without punctuation or articles, its tokens joined by single spaces."""
    _check_lang(lang)
    text = text.lower()
    text = "".join(ch for ch in text if not is_punctuation(ch))
    articles = _ARTICLES[lang]
    if articles is not None:
        text = articles.sub(" ", text)
    return " ".join(tok for tok in segment(text, lang) if tok.strip())


def tokens(text: str, lang: str) -> list[str]:
    """Return the tokens that F1 counts: the normalised answer split on whitespace."""
    return normalize_answer(text, lang).split()


def f1(prediction: str, truth: str, lang: str) -> float:
    """Return the token-overlap F1 (0..1) of a predicted and a gold answer."""
    pred_tokens = tokens(prediction, lang)
    truth_tokens = tokens(truth, lang)
    same = sum((Counter(pred_tokens) & Counter(truth_tokens)).values())
    if same == 0:  # also the case when both are empty: F1 0 even though EM is 1
        return 0.0
    # Same float operations, in the same order, as the official script, so sums agree to the last bit.
    precision = 1.0 * same / len(pred_tokens)
    recall = 1.0 * same / len(truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match(prediction: str, truth: str, lang: str) -> float:
    """Return 1.0 when the two answers normalise to the same string, else 0.0."""
    return float(normalize_answer(prediction, lang) == normalize_answer(truth, lang))


def max_over_truths(fn: Callable[[str, str, str], float], prediction: str, truths: Sequence[str],
                    lang: str) -> float:
    """Return the best score of the prediction against any of the gold answers."""
    if not truths:  # the official script fails here too (max of an empty list)
        raise ValueError("no gold answers to score the prediction against; expected at least one")
    return max(fn(prediction, truth, lang) for truth in truths)


def _score(golds: Iterable[tuple[str, Sequence[str]]], predictions: dict[str, str], lang: str) -> dict[str, float]:
    _check_lang(lang)
    em_sum = f1_sum = 0.0
    total = 0
    for qid, truths in golds:
        total += 1  # unanswered questions count in the denominator
        if qid not in predictions:
            print(f"Unanswered question {qid} will receive score 0.", file=sys.stderr)
            continue
        prediction = predictions[qid]
        em_sum += max_over_truths(exact_match, prediction, truths, lang)
        f1_sum += max_over_truths(f1, prediction, truths, lang)
    if total == 0:  # the official script divides by zero here; say what is wrong instead
        raise ValueError("no questions to score; expected at least one question")
    return {"exact_match": 100.0 * em_sum / total, "f1": 100.0 * f1_sum / total}


def evaluate(dataset: list[dict], predictions: dict[str, str], lang: str) -> dict[str, float]:
    """Return {"exact_match": %, "f1": %} of predictions (id -> text) over a SQuAD-format `data` list."""
    # Walked in file order, one entry per question (a repeated id counts twice, as in the official script).
    golds = ((qa["id"], [answer["text"] for answer in qa["answers"]])
             for article in dataset for paragraph in article["paragraphs"] for qa in paragraph["qas"])
    return _score(golds, predictions, lang)


def evaluate_examples(golds: dict[str, list[str]], predictions: dict[str, str], lang: str) -> dict[str, float]:
    """Return {"exact_match": %, "f1": %} of predictions (id -> text) against gold answers (id -> texts)."""
    return _score(golds.items(), predictions, lang)


def question_scores(golds: dict[str, list[str]], predictions: dict[str, str],
                    lang: str) -> dict[str, tuple[float, float]]:
    """Return {question id: (EM, F1) in percent} as `evaluate_examples` averages them (unanswered: 0, 0)."""
    _check_lang(lang)
    out = {}
    for qid, truths in golds.items():
        prediction = predictions.get(qid)
        out[qid] = (0.0, 0.0) if prediction is None else (100.0 * max_over_truths(exact_match, prediction, truths, lang),
                                                         100.0 * max_over_truths(f1, prediction, truths, lang))
    return out


# --- command line ---------------------------------------------------------------------------------------------

class _BadInput(ValueError):
    """A bad input file, told in one line: `<file>: <problem>; expected <what>`."""

    def __init__(self, path: str, problem: str, expected: str) -> None:
        super().__init__(" ".join(f"{path}: {problem}; expected {expected}".splitlines()))


def _read_json(path: str, expected: str) -> object:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise _BadInput(path, f"cannot read it ({exc.strerror or exc})", expected) from None
    if raw[:2] == b"\x1f\x8b" or path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise _BadInput(path, f"not a valid gzip file ({exc})", expected) from None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise _BadInput(path, "not UTF-8 text", expected) from None
    except json.JSONDecodeError as exc:
        raise _BadInput(path, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", expected) from None


def _check_dataset(path: str, obj: object) -> list[dict]:
    """Return the `data` list after checking the SQuAD layout the scorer walks."""
    layout = "a SQuAD-format JSON object {\"version\", \"data\": [{\"paragraphs\": [{\"qas\": [...]}]}]}"
    if not isinstance(obj, dict) or "data" not in obj:
        got = "an object without a 'data' key" if isinstance(obj, dict) else f"a JSON {type(obj).__name__}"
        raise _BadInput(path, f"got {got}", layout)
    data = obj["data"]
    if not isinstance(data, list):
        raise _BadInput(path, "'data' is not a list", layout)
    for i, article in enumerate(data):
        where = f"data[{i}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise _BadInput(path, f"{where} has no 'paragraphs' list", layout)
        for j, paragraph in enumerate(article["paragraphs"]):
            where = f"data[{i}].paragraphs[{j}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise _BadInput(path, f"{where} has no 'qas' list", layout)
            for k, qa in enumerate(paragraph["qas"]):
                where = f"data[{i}].paragraphs[{j}].qas[{k}]"
                if not isinstance(qa, dict) or not isinstance(qa.get("id"), str):
                    raise _BadInput(path, f"{where} has no string 'id'", layout)
                answers = qa.get("answers")
                if not isinstance(answers, list) or not answers:
                    raise _BadInput(path, f"question {qa['id']} has no answers", "at least one gold answer each")
                if not all(isinstance(a, dict) and isinstance(a.get("text"), str) for a in answers):
                    raise _BadInput(path, f"question {qa['id']} has an answer without a string 'text'", layout)
    return data


def _check_predictions(path: str, obj: object) -> dict[str, str]:
    expected = "a JSON object mapping question id to answer text"
    if not isinstance(obj, dict):
        raise _BadInput(path, f"got a JSON {type(obj).__name__}", expected)
    for qid, text in obj.items():
        if not isinstance(text, str):
            raise _BadInput(path, f"the answer of {qid} is a JSON {type(text).__name__}, not text", expected)
    return obj


def main(argv: list[str] | None = None) -> int:
    """Return the exit status after printing {"exact_match": %, "f1": %} as JSON (2 on bad input)."""
    parser = argparse.ArgumentParser(description=f"Evaluation for MLQA {EXPECTED_VERSION} (same scores as "
                                                 "mlqa_evaluation_v1.py)")
    parser.add_argument("dataset_file", help="SQuAD-format MLQA JSON file (.gz accepted)")
    parser.add_argument("prediction_file", help="JSON object: question id -> predicted answer text")
    parser.add_argument("answer_language", help=f"language code of the answers: {' '.join(MLQA_LANGS)}")
    args = parser.parse_args(argv)
    try:
        _check_lang(args.answer_language)
        dataset_json = _read_json(args.dataset_file, "a SQuAD-format JSON file (optionally gzip)")
        data = _check_dataset(args.dataset_file, dataset_json)
        predictions = _check_predictions(
            args.prediction_file,
            _read_json(args.prediction_file, "a JSON object mapping question id to answer text"))
        if str(dataset_json.get("version")) != EXPECTED_VERSION:  # the official script warns and goes on
            print(f"{args.dataset_file}: warning: scoring expects dataset version {EXPECTED_VERSION}, "
                  f"got {dataset_json.get('version')!r}", file=sys.stderr)
        result = evaluate(data, predictions, args.answer_language)
    except ValueError as exc:  # _BadInput, unknown language, a dataset without questions
        print(f"qa_eval: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
