# SPDX-License-Identifier: Apache-2.0
"""Result rows: rounding, error rows, rows from an explanation, and ``results.jsonl``/``.csv``."""
from __future__ import annotations

import csv
import io
import json
import math

import pytest
import torch

from medig.attr import Explanation
from medig.audit.records import (
    RESULT_FIELDS,
    SIGNIFICANT_DIGITS,
    error_row,
    explanation_rows,
    read_results,
    results_csv,
    results_jsonl,
    round_float,
    write_results,
)
from medig.preprocess import QUALITY_FIELDS

NAMES = ("healthy", "referable", "severe")


@pytest.mark.parametrize("value, expected", [
    (0.123456789, 0.123457), (123456.789, 123457.0), (-1.0000004, -1.0), (1e-9 / 3, 3.33333e-10),
    (0.0, 0.0), (None, None), (math.inf, math.inf), (-math.inf, -math.inf),
])
def test_round_float_keeps_six_significant_digits(value, expected) -> None:
    assert SIGNIFICANT_DIGITS == 6
    assert round_float(value) == expected
    assert math.isnan(round_float(math.nan))
    assert round_float(2 / 3, digits=2) == 0.67


def test_fields_are_unique_and_hold_the_quality_fields() -> None:
    assert len(RESULT_FIELDS) == len(set(RESULT_FIELDS))
    assert RESULT_FIELDS[:3] == ("path", "sha256", "status")
    assert set(QUALITY_FIELDS) <= set(RESULT_FIELDS)


def test_error_row_has_every_field_and_one_line_of_reason() -> None:
    row = error_row("a/b.png", None, "cannot decode:\n  truncated\tfile ")
    assert list(row) == list(RESULT_FIELDS)
    assert row["status"] == "error" and row["error"] == "cannot decode: truncated file"
    assert row["path"] == "a/b.png" and row["sha256"] is None
    assert all(row[k] is None for k in RESULT_FIELDS if k not in ("path", "status", "error"))


def _explanation(target=(2, 0), abs_tol=True) -> Explanation:
    n = len(target)
    return Explanation(
        attributions=torch.zeros(n, 3, 4, 4), target=torch.tensor(target),
        score=torch.tensor([0.123456789, 0.5]), baseline_score=torch.tensor([0.1, 0.2]),
        delta=torch.tensor([1e-4 / 3, -0.002]), relative_error=torch.tensor([0.001, math.inf]),
        n_steps=torch.tensor([24, 256]), converged=torch.tensor([True, False]),
        method="adaptive", abs_tol=torch.tensor([1e-3, 2e-3]) if abs_tol else None)


def test_explanation_rows_hold_the_explanation_per_image() -> None:
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=torch.float64)
    rows = explanation_rows(_explanation(), probs, NAMES, ["a.png", "b.png"],
                            sha256s=["1" * 64, "2" * 64], overlays=["overlays/a.png", None],
                            extra=[{"laterality": "R", "not_a_field": 1}, {}])
    a, b = rows
    assert list(a) == list(RESULT_FIELDS)
    assert (a["predicted"], a["predicted_index"], b["predicted"]) == ("severe", 2, "healthy")
    assert (a["target"], a["target_index"], b["target"], b["target_index"]) == \
        ("severe", 2, "healthy", 0)
    assert a["probabilities"] == {"healthy": 0.2, "referable": 0.3, "severe": 0.5}
    assert a["score"] == round_float(float(torch.tensor(0.123456789)))  # float32, 6 digits
    assert a["delta"] == pytest.approx(3.33333e-05, rel=1e-6) and b["relative_error"] == math.inf
    assert (a["n_steps"], a["flagged"], b["n_steps"], b["flagged"]) == (24, False, 256, True)
    assert (a["abs_tol"], b["abs_tol"]) == (round_float(float(torch.tensor(1e-3))),
                                           round_float(float(torch.tensor(2e-3))))
    assert (a["sha256"], a["overlay"], b["overlay"]) == ("1" * 64, "overlays/a.png", None)
    assert a["laterality"] == "R" and "not_a_field" not in a  # only result fields
    assert a["status"] == b["status"] == "ok" and a["error"] is None


def test_without_a_target_the_predicted_class_is_the_explained_one() -> None:
    expl = _explanation(abs_tol=False)
    expl.target = None
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]])
    a, b = explanation_rows(expl, probs, NAMES, ["a", "b"])
    assert (a["target_index"], b["target_index"]) == (2, 1)
    assert a["abs_tol"] is None and a["sha256"] is None and a["overlay"] is None


def _rows():
    probs = torch.tensor([[0.25, 0.25, 0.5], [0.5, 0.25, 0.25]], dtype=torch.float64)
    rows = explanation_rows(_explanation(), probs, NAMES, ["ö.png", "b.png"],
                            extra=[{"trust_flags": ["incomplete"], "quality_reasons": []}, {}])
    return [*rows, error_row("bad.jpg", None, "truncated")]


def test_jsonl_has_every_field_in_order_and_no_infinity() -> None:
    lines = results_jsonl(_rows()).splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert list(first) == list(RESULT_FIELDS)
    assert '"ö.png"' in lines[0]  # UTF-8 text, not \u escapes
    assert json.loads(lines[1])["relative_error"] is None  # inf is not JSON
    assert first["trust_flags"] == ["incomplete"]
    assert "Infinity" not in "".join(lines) and "NaN" not in "".join(lines)


def test_csv_spreads_the_probabilities_and_writes_lists_as_json() -> None:
    table = list(csv.reader(io.StringIO(results_csv(_rows(), NAMES))))
    header, first, _, error = table
    assert header == [f for f in RESULT_FIELDS if f != "probabilities"] + \
        ["p(healthy)", "p(referable)", "p(severe)"]
    cell = dict(zip(header, first))
    assert (cell["p(healthy)"], cell["p(severe)"]) == ("0.25", "0.5")
    assert json.loads(cell["trust_flags"]) == ["incomplete"] and cell["quality_reasons"] == "[]"
    assert cell["flagged"] == "False" and cell["overlay"] == ""  # None is an empty cell
    assert dict(zip(header, error))["p(healthy)"] == ""
    # without class names, the columns are every class seen, sorted
    assert list(csv.reader(io.StringIO(results_csv(_rows()))))[0][-3:] == \
        ["p(healthy)", "p(referable)", "p(severe)"]


def test_written_results_read_back_and_a_torn_last_line_is_skipped(tmp_path) -> None:
    rows = _rows()
    rows[1]["path"] = "caf\udce9.png"  # a name that is not UTF-8 (os.fsdecode's escape)
    write_results(tmp_path, rows, NAMES)
    (tmp_path / "results.jsonl").read_bytes().decode("utf-8")  # valid UTF-8 all the same
    back = read_results(tmp_path / "results.jsonl")
    assert [r["path"] for r in back] == ["ö.png", "caf\udce9.png", "bad.jpg"]  # round trip
    assert back[0] == json.loads(results_jsonl(rows[:1]))
    assert (tmp_path / "results.csv").read_text(encoding="utf-8").count("\n") == 4
    with open(tmp_path / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write('\n{"path": "torn.png", "sta')  # a crash mid-line, after a blank line
    assert [r["path"] for r in read_results(tmp_path / "results.jsonl")] == \
        [r["path"] for r in back]
