"""The one Markdown table layout."""

import pytest

from xlamaml.analysis.markdown import markdown_table


def test_header_rule_rows_and_alignment():
    assert markdown_table(["a", "b"], [["1", "2"], ["x", ""]]) == ["| a | b |", "|---|---|", "| 1 | 2 |", "| x |  |"]
    assert markdown_table(["m", "n", "v"], [], "llr")[1] == "|---|---|---:|"


def test_align_must_name_every_column():
    with pytest.raises(ValueError, match="per column"):
        markdown_table(["a", "b"], [], "r")
