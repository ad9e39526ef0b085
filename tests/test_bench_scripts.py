# SPDX-License-Identifier: Apache-2.0
"""The benchmark scripts run as ``python bench/NAME.py``, which puts ``bench/`` first on the
module path: a script there named like a standard-library module would replace it for every
benchmark (``bench/html.py`` broke ``import html.entities`` in pyparsing, so ``bench/loading.py``
and ``bench/preprocess.py`` failed before parsing their arguments)."""
from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_no_benchmark_module_shadows_the_standard_library() -> None:
    names = {p.stem for p in BENCH.glob("*.py")} | {p.name for p in BENCH.iterdir() if p.is_dir()}
    assert names & set(sys.stdlib_module_names) == set()
