"""docs/reliability.md and the tests it names stay in step."""

from __future__ import annotations

import re

from tests.conftest import ROOT

DOC = ROOT / "docs" / "reliability.md"


def _rows() -> list[list[str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 4 and cells[0] not in {"fault or bad input", "fault", "---"}:
            rows.append(cells)
    return rows


def _test_names() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        found |= set(re.findall(r"^def (test_\w+)\(", path.read_text(), flags=re.MULTILINE))
    return found


def test_every_row_of_the_reliability_table_names_tests_that_exist() -> None:
    rows, tests = _rows(), _test_names()
    assert len(rows) >= 35  # the parser found the tables
    for fault, _, _, named in rows:
        names = re.findall(r"`(test_\w+)`", named)
        assert names, f"no test named for: {fault}"
        assert set(names) <= tests, f"{fault}: no such test {sorted(set(names) - tests)}"
