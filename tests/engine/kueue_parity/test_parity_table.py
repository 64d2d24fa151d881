"""docs/scheduling.md's Kueue parity table is the one the ported cases give."""

from __future__ import annotations

from pathlib import Path

from tests.engine.kueue_parity.table import markdown_table

DOCS = Path(__file__).resolve().parents[3] / "docs" / "scheduling.md"
START, END = "<!-- kueue-parity:start -->\n", "<!-- kueue-parity:end -->"


def test_the_docs_table_is_generated_from_the_cases() -> None:
    text = DOCS.read_text()
    table = text[text.index(START) + len(START) : text.index(END)]
    assert table == markdown_table(), (
        "docs/scheduling.md's parity table is stale: regenerate it with "
        "`.venv/bin/python -m tests.engine.kueue_parity`"
    )
