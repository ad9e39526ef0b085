# SPDX-License-Identifier: Apache-2.0
"""Per-study pages: one PDF per study, right eye on the left of the page, figures and wording."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pypdf
import pytest
from report_fake_audit import CLASSES, make_row, write_audit

from medig.report.per_study import build_study_pages, group_studies

STUDY, OTHER = "0123456789abcdef", "fedcba9876543210"


def _rows():
    return [
        make_row("p1/img_a.dcm", laterality="L", study=STUDY, study_source="dicom",
                 laterality_source="dicom", flagged=True, relative_error=0.05),
        make_row("p1/img_b.dcm", laterality="R", study=STUDY, study_source="dicom",
                 laterality_source="dicom", quality="usable", trust_flags=["unstable", "ood"],
                 predicted=CLASSES[0], probabilities={CLASSES[0]: 0.8, CLASSES[1]: 0.2}),
        make_row("p1/broken.dcm", status="error", error="truncated DICOM file",
                 laterality="R", study=STUDY, study_source="dicom", overlay=None),
        make_row("lone.png", study=OTHER, study_source="image"),
    ]


@pytest.fixture
def pages(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    out = write_audit(tmp_path / "audit", _rows(), size=128)
    return out, build_study_pages(out)


def _words(pdf: Path) -> list[tuple[str, float, float]]:
    """(text, x, page width) of every text run of the first page."""
    page = pypdf.PdfReader(str(pdf)).pages[0]
    width = float(page.mediabox.width)
    runs: list[tuple[str, float, float]] = []

    def visit(text, cm, tm, font, size):
        if text.strip():
            runs.append((text.strip(), cm[0] * tm[4] + cm[2] * tm[5] + cm[4], width))

    page.extract_text(visitor_text=visit)
    return runs


def _text(pdf: Path) -> str:
    return "\n".join(p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages)


def test_one_pdf_per_study_with_both_eyes_on_one_page(pages):
    out, written = pages
    assert set(written) == {STUDY, OTHER}
    assert sorted(p.name for p in (out / "studies").iterdir()) == [f"{STUDY}.pdf",
                                                                   f"{OTHER}.pdf"]
    reader = pypdf.PdfReader(str(written[STUDY]))
    assert len(reader.pages) == 1 and reader.pages[0].mediabox.width > reader.pages[0].mediabox.height
    text = _text(written[STUDY])
    assert f"Study {STUDY}" in text and "keyed hash" in text
    assert "The model predicts referable DR (probability 87.3%)." in text
    assert "The model predicts no referable DR (probability 80.0%)." in text
    flat = " ".join(text.split())
    assert "Attribution not reliable (flagged: completeness or map accuracy not met)" in flat
    assert "NOT RELIABLE (completeness not met; relative error 5.00%)" in flat
    assert "Could not be read: truncated DICOM file" in text
    assert "not a diagnosis" in text.lower()
    assert "lone.png" not in text  # another page


def test_right_eye_is_on_the_left_of_the_page(pages):
    _, written = pages
    runs = _words(written[STUDY])
    x = {t: xpos for t, xpos, _ in runs}
    width = runs[0][2]
    assert x["Right eye (OD)"] < width / 2 < x["Left eye (OS)"]
    assert x["p1/img_b.dcm"] < width / 2 < x["p1/img_a.dcm"]  # img_b is the right eye


def test_trust_fields_are_shown_by_name_once(pages, tmp_path, monkeypatch):
    _, written = pages
    flat = re.sub(r"\s+", " ", _text(written[STUDY]))
    assert "Quality usable" in flat and "Trust flags unstable, ood" in flat

    def quality_figures(ctx, r):  # another engineer's figure group for the same field
        return [("Image quality", f"{r['quality']} (graded)")] if r.get("quality") else []

    import medig.report.per_study as per_study

    monkeypatch.setattr(per_study, "STUDY_FIGURES", (*per_study.STUDY_FIGURES, quality_figures))
    again = build_study_pages(written[STUDY].parents[1])
    flat = re.sub(r"\s+", " ", _text(again[STUDY]))
    assert "Image quality usable (graded)" in flat and "Quality usable" not in flat
    assert "Trust flags unstable, ood" in flat


def test_pages_are_deterministic_and_stale_pages_go(pages):
    out, written = pages
    before = {k: p.read_bytes() for k, p in written.items()}
    (out / "studies" / "aaaaaaaaaaaaaaaa.pdf").write_bytes(b"%PDF stale")
    again = build_study_pages(out)
    assert {k: p.read_bytes() for k, p in again.items()} == before
    assert not (out / "studies" / "aaaaaaaaaaaaaaaa.pdf").exists()


def test_a_rerun_days_later_rebuilds_byte_identical_pages_dated_by_the_first_run(pages):
    """The Encapsulated PDF is the page: a page dated by the run would be a new instance in the
    PACS on every re-run. It is dated by the audit's first run, whatever the later runs' times."""
    out, written = pages
    before = {k: p.read_bytes() for k, p in written.items()}
    assert "2025-03-01 09:15" in _text(written[STUDY])  # a manifest of before first_started
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(first_started=manifest["started"], started="2025-03-04T17:02:09+00:00",
                    finished="2025-03-04T17:03:41+00:00")
    path.write_text(json.dumps(manifest))
    again = build_study_pages(out)
    assert {k: p.read_bytes() for k, p in again.items()} == before
    manifest["first_started"] = "2024-12-24T08:00:00+00:00"  # another audit: another date
    path.write_text(json.dumps(manifest))
    build_study_pages(out)
    assert "2024-12-24 08:00" in _text(written[STUDY])


def test_a_study_value_is_never_a_path(tmp_path):
    rows = [make_row("a.png", study="../../evil"), make_row("b.png")]
    groups = group_studies(rows)
    assert all(re.fullmatch(r"[0-9a-f]{16}", k) for k in groups) and len(groups) == 2
    out = write_audit(tmp_path / "audit", rows)
    build_study_pages(out)
    assert not (tmp_path / "evil.pdf").exists()
    assert len(list((out / "studies").glob("*.pdf"))) == 2


def test_image_without_study_or_eye(pages):
    _, written = pages
    text = _text(written[OTHER])
    assert "Image lone.png" in text and "eye is not recorded" in text


def test_two_fields_per_eye_with_every_figure_still_fit_one_page(tmp_path):
    # Screening photographs two fields per eye (macula- and disc-centred): a clinician's page
    # holds all four, with quality, trust and lesion figures, on one sheet.
    figures = dict(quality="gradeable", quality_reasons=[], baseline_agreement=0.05,
                   baseline_topk_overlap=0.2, faithfulness=-0.1,
                   trust_flags=["baseline-dependent", "not-faithful"], pointing_hit=True,
                   mask_mass_fraction=0.45, mask_area_fraction=0.08, study=STUDY,
                   study_source="dicom", laterality_source="dicom")
    rows = [make_row(f"p/{eye}_{field}.dcm", laterality=eye, **figures)
            for eye in "RL" for field in ("macula", "disc")]
    out = write_audit(tmp_path / "audit", rows, size=128)
    (pdf,) = build_study_pages(out).values()
    assert len(pypdf.PdfReader(str(pdf)).pages) == 1
    flat = " ".join(_text(pdf).split())
    assert flat.count("0.05: depends on the reference image") == 4
    assert flat.count("NOT faithful") == 4 and "not a diagnosis" in flat.lower()
