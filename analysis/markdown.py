"""GitHub Markdown tables: the one place that lays out the pipes and the `---` rule (table.md, adaptive.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

RULES: dict[str, str] = {"l": "---", "r": "---:", "c": ":---:"}  # 'l': the default (left), as GitHub renders '---'


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str | None = None) -> list[str]:
    """Return the lines of a Markdown table: the header, the rule (one letter of `align` per column: 'l', 'r' or 'c';
    None: all 'l'), then one line per row of cell texts."""
    align = align or "l" * len(header)
    if len(align) != len(header) or set(align) - set(RULES):
        raise ValueError(f"align {align!r}: expected one of {''.join(RULES)} per column ({len(header)})")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(RULES[a] for a in align) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]
