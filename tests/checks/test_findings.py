# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

from medig.checks.findings import cohort_findings


def _row(path: str, outside: float, top: list[dict], corners_pos: float = 0.0) -> dict:
    ev = {"frame_corners": {"pos": corners_pos, "neg": 0.0, "area": 0.15},
          "outside_fov": {"pos": 0.0, "neg": 0.0, "area": 0.1},
          "retina": {"pos": 1 - corners_pos, "neg": 1.0, "area": 0.75}}
    return {"path": path, "status": "ok", "outside_fov_share": outside, "top_regions": top,
            "region_evidence": ev}


def _top(share: float, where: list[float], on: str) -> dict:
    return {"share": share, "where": where, "on": on}


def test_outside_retina_finding_boxes_the_stamp() -> None:
    stamp = [0.85, 0.03, 0.94, 0.16]
    rows = [_row(f"s{i}", 0.5, [_top(0.5, stamp, "frame_corners")], 0.55) for i in range(4)]
    rows += [_row(f"c{i}", 0.03, [_top(0.1, [0.3 + i / 20, 0.4, 0.5, 0.6], "retina")])
             for i in range(4)]
    findings = cohort_findings(rows)
    assert [f["kind"] for f in findings] == ["outside-retina"]
    f = findings[0]
    assert f["where"] == stamp and f["images"] == 4 and f["examples"] == ["s0", "s1", "s2"]
    assert f["share"] == round(4 * 0.55 / 8, 3) and "4 of 8 images" in f["text"]


def test_fixed_location_inside_the_retina_but_not_on_anatomy() -> None:
    mark = [0.4, 0.2, 0.48, 0.28]
    rows = [_row(f"m{i}", 0.02, [_top(0.45, mark, "retina")]) for i in range(3)]
    rows += [_row(f"d{i}", 0.02, [_top(0.6, [0.7, 0.45, 0.82, 0.58], "optic_disc")])
             for i in range(5)]
    findings = cohort_findings(rows)
    assert [f["kind"] for f in findings] == ["fixed-location"]
    assert findings[0]["where"] == mark and findings[0]["images"] == 3


def test_no_finding_on_spread_evidence_or_too_few_images() -> None:
    rows = [_row(f"r{i}", 0.03, [_top(0.2, [i / 10, 0.1 * i, i / 10 + 0.1, 0.1 * i + 0.1],
                                        "retina")]) for i in range(8)]
    assert cohort_findings(rows) == []
    one = rows + [_row("s", 0.6, [_top(0.5, [0.85, 0.03, 0.94, 0.16], "frame_corners")], 0.5)]
    assert cohort_findings(one) == []  # one image of nine is no pattern
    assert cohort_findings([]) == [] and cohort_findings([{"status": "error"}]) == []
