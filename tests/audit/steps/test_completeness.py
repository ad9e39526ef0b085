# SPDX-License-Identifier: Apache-2.0
"""Audit step ``RecordCompletenessRule``: the rule behind ``flagged`` and ``abs_tol``, in the
manifest."""
from __future__ import annotations

import pytest

from medig.attr.completeness import PROBABILITY_ATOL
from medig.audit.steps.completeness import RecordCompletenessRule
from tests.audit.steps.kit import finished, make_context, settings


@pytest.mark.parametrize("changes, atol, output", [
    ({}, PROBABILITY_ATOL, "probability"),
    ({"output": "logit", "completeness_atol": 0.25, "completeness_tol": 0.05}, 0.25, "logit"),
])
def test_the_completeness_rule_names_the_tolerances_in_effect(tmp_path, changes, atol,
                                                              output) -> None:
    s = settings(**changes)
    audit = finished(make_context(tmp_path / "out", s), [], [])
    RecordCompletenessRule()(audit)
    rule = audit.manifest["completeness_rule"]
    assert f"|delta| <= max({atol:g}, {s.completeness_tol:g} * |F(x) - F(x')|)" in rule
    assert f"F the explained {output}" in rule and "flagged" in rule
