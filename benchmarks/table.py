"""The results table: typed rows, rendered as markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

COLUMNS = ("#", "measure", "stemcat", "baseline", "ratio", "conditions")


@dataclass(frozen=True)
class Row:
    """One line of the table; `row_id` is the issue's row number, with a letter for sub-rows (`2b`)."""

    row_id: str
    measure: str
    stemcat: str
    baseline: str = "—"
    ratio: str = "—"
    conditions: str = ""

    @property
    def group(self) -> str:
        """The issue's row number this line belongs to (`2` for `2b`)."""
        return self.row_id.rstrip("abcdefgh")

    def cells(self) -> tuple[str, ...]:
        return (self.row_id, self.measure, self.stemcat, self.baseline, self.ratio, self.conditions)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: Sequence[Row]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_escape(cell) for cell in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def ratio(numerator: float, denominator: float, *, digits: int = 2) -> str:
    """`a / b` as text, or a dash when it cannot be computed."""
    if denominator <= 0:
        return "—"
    return f"{numerator / denominator:.{digits}f}×"
