# SPDX-License-Identifier: Apache-2.0
"""The report under the rule |delta| <= max(atol, tol * |F(x) - F(x')|): wording, chart, per image."""
from __future__ import annotations

import re
from pathlib import Path

import pypdf
from report_fake_audit import make_row, write_audit

from medig.report import build_report
from medig.report.data import relative_error_bins


def _text(pdf: Path) -> str:
    return " ".join(" ".join(p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages).split())


def _rule_audit(tmp_path: Path) -> Path:
    rows = [
        # change 0.46, gap 0.0019: 0.42% relative, allowed 1% of 0.46 = 0.0046
        make_row("big_change.png", abs_tol=0.00461),
        # change 0.012, gap 0.0006: 5% relative but within the absolute 0.001: complete
        make_row("tiny_change.png", score=0.972, baseline_score=0.984, delta=-0.0006,
                 relative_error=0.05, abs_tol=0.001),
        # change 0.012, gap 0.0031: above both: flagged
        make_row("missed.png", score=0.972, baseline_score=0.984, delta=0.0031,
                 relative_error=0.2583, abs_tol=0.001, flagged=True),
    ]
    settings = {"completeness_tol": 0.01, "completeness_atol": 0.001, "baselines": ["black"],
                "output": "probability"}
    return write_audit(tmp_path, rows, {"settings": settings, "output": "probability"})


def test_bins_count_flagged_images_apart():
    bins = relative_error_bins([0.004, 0.05, 0.2583], 0.01, flags=[False, False, True])
    above = [b for b in bins if b.lo >= 0.01]
    assert sum(b.count for b in above) == 2 and sum(b.flagged for b in above) == 1
    assert all(b.flagged is None for b in relative_error_bins([0.004], 0.01))


def test_report_states_the_rule_with_its_numbers(tmp_path: Path):
    text = _text(build_report(_rule_audit(tmp_path)))
    # summary: why the one image was flagged
    assert "1 of 3 explained images" in text
    assert "flagged (completeness or map accuracy not met" in text
    # completeness section and the method note state the rule in one sentence
    assert "exceeds both 0.001 (in probability) and 1.00% of its change" in text
    assert re.search(r"Completeness rule: an image's attribution counts as complete when its "
                     r"completeness gap is at most the larger of 0\.001 \(in probability\) and "
                     r"1\.00% of the change", text)
    # per image: the gap beside what the rule allowed, and the verdict
    assert "-6.000e-04 (allowed ±0.001): met" in text
    assert "0.0031 (allowed ±0.001): NOT MET (flagged)" in text
    assert "5.00%" in text  # the relative error is still reported
    # under the chart: why an image right of the tolerance line is not flagged (tiny_change only)
    assert ("1 image(s) above 1.00% are not flagged: their gap is within 0.001 (in probability)"
            in text)


def test_audits_from_before_the_absolute_tolerance_keep_their_wording(tmp_path: Path):
    rows = [make_row("old.png")]  # no abs_tol column, no completeness_atol setting
    text = _text(build_report(write_audit(tmp_path, rows)))
    assert "0.42%: met" in text  # per-image verdict on the relative error, as before
    assert "larger of 1e-06" in text  # they flagged against the float noise floor
