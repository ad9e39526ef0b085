# SPDX-License-Identifier: Apache-2.0
"""Audit step ``Findings``: ``manifest["findings"]`` is :func:`medig.checks.findings.cohort_findings`
of the rows."""
from __future__ import annotations

from types import SimpleNamespace

from medig.audit.steps.findings import Findings
from medig.checks.findings import cohort_findings


def test_findings_of_the_rows_go_to_the_manifest() -> None:
    stamp = {"share": 0.5, "where": [0.85, 0.03, 0.94, 0.16], "on": "frame_corners"}
    rows = [{"path": f"s{i}", "status": "ok", "outside_fov_share": 0.5, "top_regions": [stamp],
             "region_evidence": {}} for i in range(3)]
    audit = SimpleNamespace(rows=rows, manifest={})
    Findings()(audit)
    assert audit.manifest["findings"] == cohort_findings(rows)
    assert audit.manifest["findings"][0]["kind"] == "outside-retina"
