# SPDX-License-Identifier: Apache-2.0
"""A non-editable ``pip install .`` ships every package of the source tree."""
from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_for_setuptools():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "medig").rglob("__init__.py")}
    assert {"medig.synthetic", "medig.visualize"} <= on_disk
    assert on_disk - listed == set(), "packages missing from [tool.setuptools] packages"
    assert listed - on_disk == {"medig.templates"}  # installed from templates/ (package-dir)
