"""Per-item outcome files: written, read back exactly; MLQA's per-question scores average to the official ones."""

import numpy as np
import pytest

from xlamaml.trainables.errors import InputError
from xlamaml.trainables.tasks.outcomes import outcome_path, read_outcomes, write_outcomes
from xlamaml.trainables.tasks.qa_eval import evaluate_examples, question_scores


def test_round_trip_and_path(tmp_path):
    path = outcome_path(tmp_path / "predictions" / "test-de.json")
    assert path.name == "test-de.items.tsv"
    f1 = np.array([100.0, 2 / 3 * 100, 0.0])
    write_outcomes(path, ["q1", "q2", "q3"], {"em": [1.0, 0.0, 0.0], "f1": f1})
    uids, values = read_outcomes(path)
    assert uids == ["q1", "q2", "q3"] and values["f1"].tolist() == f1.tolist()


def test_bad_file_is_one_line(tmp_path):
    (tmp_path / "x.items.tsv").write_text("id\tacc\n1\t1\n")
    with pytest.raises(InputError, match="x.items.tsv: expected a header"):
        read_outcomes(tmp_path / "x.items.tsv")
    (tmp_path / "y.items.tsv").write_text("uid\tacc\n1\tyes\n")
    with pytest.raises(InputError, match="y.items.tsv:2: expected numbers"):
        read_outcomes(tmp_path / "y.items.tsv")


def test_question_scores_average_to_the_official_metric():
    golds = {"a": ["the cat"], "b": ["Paris", "paris france"], "c": ["blue"], "d": ["x"]}
    preds = {"a": "a cat", "b": "Paris, France", "c": "red"}  # d unanswered: scores 0
    per = question_scores(golds, preds, "en")
    official = evaluate_examples(golds, preds, "en")
    assert np.mean([v[0] for v in per.values()]) == pytest.approx(official["exact_match"])
    assert np.mean([v[1] for v in per.values()]) == pytest.approx(official["f1"])
    assert per["d"] == (0.0, 0.0) and per["a"][0] == 100.0
