# SPDX-License-Identifier: Apache-2.0
"""Static types: ``mypy`` ([tool.mypy] in pyproject.toml) is clean on ``medig/``, and the result
row's TypedDict makes a misspelt field an error."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import types
import typing
from pathlib import Path

import pytest

from medig.report.rows import RESULT_FIELDS, ResultRow

ROOT = Path(__file__).resolve().parents[1]

# The column order of results.jsonl and results.csv: a file format, fixed.
COLUMNS = (
    "path", "sha256", "status", "error", "predicted", "predicted_index", "probabilities",
    "target", "target_index", "score", "baseline_score", "delta", "relative_error", "map_error",
    "n_steps", "flagged", "flag_reason", "overlay", "pointing_hit", "mask_mass_fraction", "mask_area_fraction", "laterality",
    "study", "study_source", "laterality_source", "target_members", "abs_tol",
    "baseline_agreement", "baseline_topk_overlap", "faithfulness", "deletion_auc",
    "random_deletion_auc", "occlusion_agreement", "trust_flags",
    "outside_fov_share", "region_evidence", "top_regions",
    "quality", "quality_reasons", "fov_shape", "fov_fraction", "sharpness", "saturated_fraction",
    "dark_fraction", "shadow_fraction", "mean_luminance", "image_colour", "edge_density",
    "vessel_density",
)


def _mypy(*args: str) -> subprocess.CompletedProcess:
    """``python -m mypy`` with this repository's configuration, from its root.

    The cache lives in the system's temporary folder, one per checkout, and is kept between test
    runs: a first run checks everything (about 40 s of CPU), later runs only what changed.
    """
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (it is in the test extra)")
    tag = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    cache = Path(tempfile.gettempdir()) / f"medig-mypy-cache-{tag}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this tree's medig, not an installed one
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(cache), "--no-error-summary", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_mypy_is_clean_on_the_package():
    result = _mypy()  # the files and strictness of [tool.mypy]
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_misspelt_field_is_a_mypy_error(tmp_path):
    # The typing bites: each misspelt read is reported on its own line, the correct ones are not.
    snippet = tmp_path / "rows_snippet.py"
    snippet.write_text(
        "from medig.report.rows import ResultRow\n"
        "\n"
        "\n"
        "def reads(row: ResultRow) -> list[object]:\n"
        "    return [\n"
        "        row.get('relative_error'),\n"  # line 6: a field
        "        row.get('relative_eror'),\n"  # line 7: misspelt, read with .get
        "        row['status'],\n"  # line 8: a field
        "        row['stauts'],\n"  # line 9: misspelt, read by key
        "    ]\n", encoding="utf-8")
    result = _mypy(str(snippet))
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout + result.stderr
    assert [line.split(":")[1] for line in errors] == ["7", "9"], result.stdout
    assert all("[typeddict-item]" in line for line in errors), result.stdout
    assert '"relative_eror"' in errors[0] and '"stauts"' in errors[1]


def test_the_columns_are_the_typed_row_in_file_order():
    import medig.audit
    from medig.audit import records

    assert RESULT_FIELDS == COLUMNS == tuple(ResultRow.__annotations__)
    assert records.RESULT_FIELDS is RESULT_FIELDS and medig.audit.RESULT_FIELDS is RESULT_FIELDS
    assert records.ResultRow is ResultRow


def test_fields_read_by_name_are_result_fields():
    # These names are read with a variable key, which mypy cannot check against ResultRow.
    from medig.audit.steps.localisation import LOCALISATION_FIELDS
    from medig.audit.study import IDENTITY_FIELDS
    from medig.preprocess import QUALITY_FIELDS
    from medig.report.per_study import TRUST_FIELDS

    for names in (LOCALISATION_FIELDS, IDENTITY_FIELDS, QUALITY_FIELDS, TRUST_FIELDS):
        assert set(names) <= set(RESULT_FIELDS), names


def _json_kind(hint: object) -> type:
    """The Python type a field's annotation allows besides None (a Literal's values' type)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # X | None
        (kind,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _json_kind(kind)
    if origin is typing.Literal:
        return type(typing.get_args(hint)[0])
    return origin if isinstance(origin, type) else typing.cast(type, hint)  # dict[..] -> dict


def test_the_run_time_row_check_agrees_with_the_typed_row():
    # The report checks each row read back against RESULT_TYPES: the same fields, the same types.
    from medig.report.data import RESULT_TYPES

    kinds = {"str": str, "int": int, "number": float, "bool": bool, "probabilities": dict,
             "strings": list, "regions": dict, "region_list": list}
    hints = typing.get_type_hints(ResultRow)
    assert set(RESULT_TYPES) == set(RESULT_FIELDS)
    assert {name: kinds[kind] for name, kind in RESULT_TYPES.items()} == {
        name: _json_kind(hints[name]) for name in RESULT_FIELDS}
