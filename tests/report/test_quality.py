# SPDX-License-Identifier: Apache-2.0
"""The report's image-quality parts, from hand-written rows: counts, the section, the per-image
line, and skipped images counted apart from failures."""
from __future__ import annotations

import re
from pathlib import Path

import pypdf
from report_fake_audit import CLASSES, make_row, write_audit

from medig.report import build_report
from medig.report.quality import quality_figures, quality_tag

GOOD = dict(quality="gradeable", quality_reasons=[], fov_shape="circle", fov_fraction=0.64,
            sharpness=0.031, saturated_fraction=0.0, dark_fraction=0.0, shadow_fraction=0.0)


def _text(pdf: Path) -> str:
    return " ".join(" ".join((p.extract_text() or "").split())
                    for p in pypdf.PdfReader(str(pdf)).pages)


def _rows() -> list[dict]:
    return [
        make_row("eye_1.png", **GOOD),
        make_row("eye_2.png", **{**GOOD, "quality": "ungradeable",
                                 "quality_reasons": ["out of focus (sharpness 0.004)"],
                                 "sharpness": 0.004},
                 predicted=CLASSES[0], probabilities={CLASSES[0]: 0.97, CLASSES[1]: 0.03}),
        make_row("holiday.jpg", **{**GOOD, "quality": "not_fundus", "fov_shape": "full_frame",
                                   "fov_fraction": 1.0,
                                   "quality_reasons": ["not a retinal image (colour)"]},
                 probabilities={CLASSES[0]: 0.4, CLASSES[1]: 0.6}),
    ]


def test_section_lists_non_gradeable_images_with_the_model_prediction(tmp_path):
    text = _text(build_report(write_audit(tmp_path / "a", _rows())))
    assert "Image quality: 1 gradeable, 1 ungradeable, 1 not fundus photographs." in text
    assert "The model was confident (p of at least 0.9) on 1 of the 2 images" in text
    section = text.split("Images that are not gradeable fundus photographs", 1)[1]
    section = section.split("How to read the overlays", 1)[0]
    assert re.search(r"holiday\.jpg not a fundus photograph not a retinal image \(colour\) "
                     r"referable DR \(p = 0\.600\)", section)
    assert "eye_2.png ungradeable out of focus (sharpness 0.004) no referable DR (p = 0.970) " \
           "\u2014 confident" in section
    assert "eye_1.png" not in section
    # per image: the title says it, the table has the quality line and its measures
    assert "holiday.jpg \u2014 NOT A FUNDUS PHOTOGRAPH" in text
    assert "full frame, no black border (100% of the frame)" in text


def test_skipped_images_are_neither_explained_nor_failures(tmp_path):
    skipped = make_row("dark.png", status="skipped", predicted=None, predicted_index=None,
                       probabilities=None, target=None, target_index=None, score=None,
                       baseline_score=None, delta=None, relative_error=None, n_steps=None,
                       flagged=None, overlay=None,
                       **{**GOOD, "quality": "ungradeable",
                          "quality_reasons": ["under-exposed: 93% of the field too dark"]})
    rows = [make_row("eye_1.png", **GOOD), skipped]
    text = _text(build_report(write_audit(tmp_path / "a", rows,
                                          {"quality": {"mode": "skip"}})))
    assert "2 images audited: 1 explained, 0 could not be read, 1 skipped as not gradeable." \
        in text
    assert "None: every input could be read." in text
    assert "They were not given to the model (--quality skip)" in text
    assert "dark.png \u2014 SKIPPED: UNGRADEABLE" in text
    assert "skipped: not explained" in text


def test_audits_without_the_gate_say_so(tmp_path):
    text = _text(build_report(write_audit(tmp_path / "a", [make_row("eye_1.png")])))
    assert "Not checked: this audit ran with the image-quality gate off" in text
    assert "Image quality:" not in text


def test_figure_group_and_tag():
    assert quality_figures(None, make_row("x.png")) == []  # no verdict: nothing printed
    row = make_row("x.png", **{**GOOD, "saturated_fraction": 0.41, "quality": "ungradeable",
                               "quality_reasons": ["over-exposed: 41% of the field washed out"]})
    figures = dict(quality_figures(None, row))
    assert figures["Image quality"] == "ungradeable: over-exposed: 41% of the field washed out"
    assert figures["Quality measures"] == ("circular field (64% of the frame); sharpness 0.031; "
                                           "41% washed out")
    assert quality_tag(row).endswith("UNGRADEABLE") and quality_tag(make_row("y")) == ""
