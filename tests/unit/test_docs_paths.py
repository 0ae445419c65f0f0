"""The documentation names no path of the machine it was written on: commands use ``$MICROFAIR_TESTDATA``
and relative paths, example output shortens the checkout and facility roots."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MACHINE_PATH = re.compile(r"(?<![\w.-])/work/")  # the development machine's checkout and shared folders


def test_docs_and_readme_name_no_absolute_work_path() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert len(pages) > 5
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()[:100]}" for p in pages
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if MACHINE_PATH.search(line)]
    assert found == [], "\n".join(found)
