# SPDX-License-Identifier: Apache-2.0
"""The README's Quick start is the project's contract: two lines, and CI runs the second."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_lines() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^##\s+Quick start\s*$(.*?)^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    assert match, "README.md has no code block under '## Quick start'"
    return [ln.strip() for ln in match.group(2).splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def test_quick_start_has_two_lines_and_ci_runs_the_test_line():
    lines = quick_start_lines()
    assert len(lines) == 2
    assert "medig audit examples/fundus" in lines[0]
    assert lines[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
