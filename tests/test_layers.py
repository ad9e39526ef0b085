# SPDX-License-Identifier: Apache-2.0
"""The package's layers ([tool.importlinter] in pyproject.toml), kept by ``lint-imports``."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    found = shutil.which("lint-imports") or shutil.which(
        "lint-imports", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("lint-imports is not installed (pip install import-linter, in the test extra)")
    return found


def _run(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with this repository's contracts on the ``medig`` package under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}  # that tree's medig, not an installed one
    return subprocess.run([_lint_imports(), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_the_import_contracts_are_kept():
    result = _run(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_audit_import_of_the_pacs_breaks_the_contract(tmp_path):
    # The contract bites: the same tree with one audit -> pacs import (inside a function, as the
    # old cycle was hidden) is refused, naming the import.
    shutil.copytree(ROOT / "medig", tmp_path / "medig",
                    ignore=shutil.ignore_patterns("__pycache__", "weights"))
    errors = tmp_path / "medig" / "audit" / "errors.py"
    errors.write_text(errors.read_text(encoding="utf-8")
                      + "\n\ndef _dicom():\n    from medig.pacs.send import check_aet\n\n"
                        "    return check_aet\n", encoding="utf-8")
    result = _run(tmp_path)
    assert result.returncode != 0
    assert "The audit knows nothing of the PACS" in result.stdout
    assert "medig.audit.errors -> medig.pacs.send" in result.stdout
