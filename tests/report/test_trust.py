# SPDX-License-Identifier: Apache-2.0
"""The "Can the attributions be trusted?" block, per-image trust figures and heading flags."""
from __future__ import annotations

import re
from pathlib import Path

import pypdf
from report_fake_audit import make_row, write_audit

from medig.report import build_report
from medig.report.fonts import get_fonts
from medig.report.trust import agreement_chart, sanity_chart

SANITY = {"status": "passed", "threshold": 0.7, "images": ["a", "b", "c"],
          "stages": ["model.fc", "model.stages.3"], "similarity": [0.81, 0.42],
          "ssim": [0.5, 0.2], "seconds": 3.1}
THRESHOLDS = {"baseline_agreement_min": 0.1, "faithfulness_min": 0.0,
              "randomisation_max_similarity": 0.7}


def _audit(tmp_path: Path, sanity: dict | None = SANITY) -> Path:
    rows = [
        make_row("eye_1.png", baseline_agreement=0.42, baseline_topk_overlap=0.5,
                 faithfulness=0.31, deletion_auc=2.5, random_deletion_auc=4.1, trust_flags=[]),
        make_row("eye_2.png", baseline_agreement=0.05, baseline_topk_overlap=0.0,
                 faithfulness=-0.12, deletion_auc=4.4, random_deletion_auc=4.0,
                 trust_flags=["baseline-dependent", "not-faithful"]),
        make_row("eye_3.png", baseline_agreement=0.25, baseline_topk_overlap=0.25,
                 faithfulness=0.2, deletion_auc=1.0, random_deletion_auc=2.0, flagged=True,
                 relative_error=0.03, trust_flags=["incomplete"], occlusion_agreement=0.61),
    ]
    extra = {"settings": {"completeness_tol": 0.01, "baselines": ["black", "blur"]},
             "trust_checks": {"thresholds": THRESHOLDS,
                              **({"sanity_check": sanity} if sanity else {})}}
    return write_audit(tmp_path / "audit", rows, manifest_extra=extra)


def _pages(pdf: Path) -> list[str]:
    return [" ".join(p.extract_text().split()) for p in pypdf.PdfReader(str(pdf)).pages]


def test_block_on_the_cover_states_each_check_with_its_meaning(tmp_path: Path) -> None:
    pages = _pages(build_report(_audit(tmp_path)))
    cover = pages[0]
    assert "Can the attributions be trusted?" in cover
    assert "2 of 3 maps add up" in cover and "1 flagged" in cover
    assert "median 0.25" in cover and "1 of 3 images below 0.10" in cover
    assert "2 of 3 maps (67%) beat random pixel removal" in cover
    assert "PASSED on 3 images" in cover and "similarity 0.42, below 0.70" in cover
    assert "reference images (black and blur)" in cover  # template names filled in
    assert "{" not in cover


def test_each_image_shows_its_figures_and_flags(tmp_path: Path) -> None:
    text = " ".join(_pages(build_report(_audit(tmp_path))))
    assert "eye_2.png — check: baseline-dependent, not-faithful" in text
    assert "eye_3.png — FLAGGED: incomplete attribution" in text
    assert "eye_3.png — FLAGGED: incomplete attribution — check" not in text
    assert "0.05: flagged: baseline-dependent; strongest 5% shared: 0%" in text
    assert "0.42: not flagged (flag below 0.10)" in text
    assert "-0.12: flagged: does not beat random removal" in text
    assert "+0.31: beats random removal" in text
    assert "0.61 (rank correlation with occlusion)" in text


def test_failed_missing_and_old_audits(tmp_path: Path) -> None:
    failed = dict(SANITY, status="failed", similarity=[0.99, 0.97])
    cover = _pages(build_report(_audit(tmp_path / "f", failed)))[0]
    assert "FAILED on 3 images" in cover and "not below 0.70" in cover
    assert "Do not use them to judge the model" in cover
    cover = _pages(build_report(_audit(tmp_path / "n", None)))[0]
    assert "NOT RUN" in cover and "not recorded for this audit" in cover
    old = write_audit(tmp_path / "old", [make_row("eye.png")])  # before the checks existed
    cover = _pages(build_report(old))[0]
    assert re.search(r"not measured \(a single baseline", cover)


def test_charts_draw_the_distribution_and_the_cascade() -> None:
    fonts = get_fonts()
    chart = agreement_chart([-0.2, 0.05, 0.42, 0.45, 1.0], 0.1, fonts.regular)
    labels = [s.text for s in chart.contents if hasattr(s, "text")]
    assert labels.count("1") >= 3 and "2" in labels  # bars: <0, 0-0.1, 0.4-0.5 (two), 1
    chart = sanity_chart([0.81, 0.42], ["model.fc", "model.stages.3"], 0.7, fonts.regular)
    labels = [s.text for s in chart.contents if hasattr(s, "text")]
    assert {"0.81", "0.42", "fc", "+ stages.3"} <= set(labels)
    assert any("passes below 0.70" in label for label in labels)
