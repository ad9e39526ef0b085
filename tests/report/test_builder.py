# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import json
import re
from pathlib import Path

import pypdf
import pytest
from report_fake_audit import CLASSES, make_row, write_audit

from medig.report import TemplateError, build_report, format_percent, load_template


def _text(pdf: Path) -> tuple[int, str]:
    reader = pypdf.PdfReader(str(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    # Paragraph wrapping puts line breaks inside long names; compare on whitespace-free text.
    return len(reader.pages), text


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_report_content(audit_dir: Path) -> None:
    pdf = build_report(audit_dir)
    assert pdf == audit_dir / "report.pdf" and pdf.is_file()
    assert not list(audit_dir.glob("*.tmp"))
    n_pages, text = _text(pdf)
    assert 2 <= n_pages <= 8
    flat = _flat(text)
    for name in (
        "clinic A/eye_001.png",
        "clinic A/eye_002.jpg",
        "clinic B/broken.dcm",
        "R&D <test>/Ångström ü 眼底.png",
    ):
        assert _flat(name) in flat, name
    # counts on the cover, per-class predictions, error reason, figures formatted as in the report
    assert "4 images audited: 3 explained, 1 could not be read." in text
    assert "2 of 3 explained images" in text
    assert "not a DICOM file: missing preamble" in text
    assert format_percent(0.0731) == "7.31%" and "7.31%" in text
    assert "1.55%: NOT MET (flagged)" in text and "0.42%: met" in text
    assert "referable DR (p = 0.873)" in text
    assert "1.00%" in text  # tolerance from the manifest settings
    assert (
        _flat("34.5% of positive attribution on 5.1% of the retina, 6.8\u00d7 the area share")
        in flat
    )
    assert f"Page 1 of {n_pages}" in text and f"Page {n_pages} of {n_pages}" in text
    assert "not a diagnosis" in text.lower()


def test_flagged_and_error_sections_list_exactly_those_images(audit_dir: Path) -> None:
    _, text = _text(build_report(audit_dir))
    flagged_part = text.split("Images flagged: completeness or map accuracy not met", 1)[1].split(
        "Images that could not", 1
    )[0]
    assert "eye_002.jpg" in flagged_part and _flat("Ångström ü 眼底.png") in _flat(flagged_part)
    assert "eye_001.png" not in flagged_part and "broken.dcm" not in flagged_part
    # the larger error is listed first
    assert flagged_part.index("7.31%") < flagged_part.index("1.55%")


def test_template_override_title_institution_and_order(audit_dir: Path, tmp_path: Path) -> None:
    tpl = tmp_path / "hospital.toml"
    tpl.write_text(
        '[report]\ntitle = "Audit für Augenklinik"\ninstitution = "Hôpital Saint-Éloi & Co"\n'
        'sections = ["errors", "summary"]\n',
        encoding="utf-8",
    )
    n_pages, text = _text(build_report(audit_dir, template=tpl))
    assert "Audit für Augenklinik" in text and "Hôpital Saint-Éloi & Co" in text
    assert "Integrated Gradients audit of a retinal image classifier" not in text
    assert "How to read the overlays" not in text  # section left out of the order
    assert text.index("Images that could not be read") < text.index("Summary")
    assert n_pages <= 2  # no per-image pages
    # untouched keys fall back to the shipped defaults
    assert load_template(tpl)["headings"]["summary"] == load_template()["headings"]["summary"]


def test_template_errors_are_clear(tmp_path: Path, audit_dir: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[report]\nsections = ["summary", "apendix"]\n', encoding="utf-8")
    with pytest.raises(TemplateError, match="unknown section 'apendix'.*known sections"):
        load_template(bad)
    bad.write_text('[report]\ntitel = "x"\n', encoding="utf-8")
    with pytest.raises(
        TemplateError, match=r"unknown key \[report\]\.titel \(did you mean 'title'\?\)"
    ):
        load_template(bad)
    bad.write_text('[report]\nmax_images_full = "many"\n', encoding="utf-8")
    with pytest.raises(TemplateError, match="must be an integer"):
        load_template(bad)
    with pytest.raises(TemplateError, match="unknown section"):
        build_report(audit_dir, template={"report": {"sections": ["nope"]}})
    assert not (audit_dir / "report.pdf").exists()


def test_no_phi_unless_asked(tmp_path: Path) -> None:
    rows = [
        make_row(
            "a.png", metadata={"PatientName": "DOE^JOHN", "PatientID": "MRN-778899"}, laterality="R"
        )
    ]
    out = write_audit(tmp_path / "a", rows)
    _, text = _text(build_report(out))
    assert "DOE^JOHN" not in text and "MRN-778899" not in text and "PatientName" not in text
    assert "R (right eye)" in text
    _, text = _text(build_report(out, include_phi=True))
    assert "DOE^JOHN" in text and "MRN-778899" in text


def test_large_audit_samples_images_and_says_so(tmp_path: Path) -> None:
    rows = [make_row(f"img_{i:03d}.png", overlay=None) for i in range(30)]
    rows[7].update(flagged=True, relative_error=0.2)
    rows[21].update(status="error", error="truncated file")
    out = write_audit(tmp_path / "big", rows)
    tpl = {"report": {"max_images_full": 10, "sample_size": 3}}
    _, text = _text(build_report(out, template=tpl))
    per_image = text.split("plus 3 of the other 28 images", 1)
    assert len(per_image) == 2, "sample note missing"
    shown = set(re.findall(r"img_\d{3}\.png", per_image[1].split("Technical details")[0]))
    assert {"img_007.png", "img_021.png"} <= shown and len(shown) == 5
    # the sample is reproducible
    _, again = _text(build_report(out, template=tpl))
    assert set(
        re.findall(r"img_\d{3}\.png", again.split("plus 3 of the other 28 images", 1)[1])
    ) == set(re.findall(r"img_\d{3}\.png", per_image[1]))


def test_robust_to_bad_lines_missing_manifest_and_hostile_paths(tmp_path: Path) -> None:
    out = tmp_path / "r"
    rows = [
        make_row("ok.png", overlay="../../etc/passwd"),
        make_row("x\x00<b>y</b>.png", overlay=None),
    ]
    write_audit(out, rows)
    (out / "manifest.json").unlink()
    with open(out / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"path": "cut-by-cra')
    _, text = _text(build_report(out))
    assert "1 line(s) of results.jsonl could not be parsed" in text
    assert "manifest.json is missing" in text
    assert "<b>y</b>" in text  # printed literally, not interpreted as markup
    assert "No overlay image was found" in text


def test_missing_results_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="results.jsonl"):
        build_report(tmp_path)


def test_default_template_documents_every_key() -> None:
    from medig.report import default_template_path

    source = default_template_path().read_text(encoding="utf-8")
    tpl = load_template()
    lines = source.splitlines()
    for table, keys in tpl.items():
        for key in keys:
            i = next(n for n, line in enumerate(lines) if line.startswith(f"{key} =")) - 1
            # a run of one-line keys (the [headings] table) may share the comment above it
            while re.match(r'^\w+ = "[^"]*"$', lines[i]):
                i -= 1
            assert lines[i].startswith("#"), f"[{table}].{key} has no comment"
    assert json.loads(json.dumps(tpl)) == tpl  # plain data: no dates or other TOML-only types
    assert set(tpl["report"]["sections"]) <= set(__import__("medig.report").report.SECTIONS)
    assert CLASSES
