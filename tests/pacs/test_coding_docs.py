# SPDX-License-Identifier: Apache-2.0
"""docs/pacs.md lists every code medig writes, in one table, as the code defines it."""
from __future__ import annotations

import re
from pathlib import Path

from medig.pacs.coding import CLASS_CODES, CONCEPTS, SCHEME, VERDICTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "pacs.md"


def table_rows() -> dict[tuple[str, str], str]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `(\w+)` \| `(\w+)` \| ([^|]+) \|", line)
        if match:
            rows[(match[1], match[2])] = match[3].strip()
    return rows


def test_the_docs_table_lists_every_code_with_its_meaning():
    rows = table_rows()
    expected = {(SCHEME, v): m for v, m in [*CONCEPTS.values(), *VERDICTS.values()]}
    expected |= {("SCT", v): m for v, m in CLASS_CODES.values()}
    assert rows == expected


def test_the_pictures_exist_and_are_small():
    text = DOC.read_text(encoding="utf-8")
    pictures = re.findall(r"\]\((images/pacs-[\w-]+\.png)\)", text)
    assert len(pictures) == 4
    for picture in pictures:
        path = DOC.parent / picture
        assert path.is_file() and path.stat().st_size < 150_000, picture
