# SPDX-License-Identifier: Apache-2.0
"""The DICOM objects themselves: valid IODs (dciodvfy), parse back, reference their source."""
from __future__ import annotations

import datetime
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medig.pacs.objects import (
    COPIED_ATTRIBUTES,
    OVERLAY_SERIES_DESCRIPTION,
    overlay_capture,
    read_source,
    study_document,
)
from tests.io.conftest import PHI, build_dicom, rgb_fundus
from tests.pacs.conftest import encapsulated_pdf, shift_clock

ROOT = Path(__file__).resolve().parents[2]
DCIODVFY = shutil.which("dciodvfy")


def dciodvfy_errors(path: Path) -> list[str]:
    """Lines dciodvfy reports as errors (it exits 0 either way)."""
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, errors="replace",
                         timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture
def sources(tmp_path):
    """Two eyes of one study, and the bundled two-frame example (another patient)."""
    out = []
    study = pydicom.uid.generate_uid()
    for k, eye in enumerate(("R", "L")):
        ds = build_dicom(rgb_fundus(48, 64, seed=k), laterality=eye)
        ds.StudyInstanceUID = study
        ds.StudyTime, ds.StudyID, ds.PatientSex = "101500", "S-1", "F"
        path = tmp_path / f"{eye}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def picture(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 90, 3), dtype=np.uint8)


def capture(source_path: Path, frame=None, pic=None, key="k1", lat="R"):
    return overlay_capture(read_source(source_path), picture() if pic is None else pic,
                           frame=frame, laterality=lat, output_key=key, instance_number=1,
                           derivation="IG test")


def test_secondary_capture_parses_back_and_references_its_source(sources, tmp_path):
    src = pydicom.dcmread(sources[0])
    sc = capture(sources[0])
    path = tmp_path / "sc.dcm"
    sc.save_as(path, enforce_file_format=True)
    back = pydicom.dcmread(path)
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert back.PhotometricInterpretation == "RGB" and back.SamplesPerPixel == 3
    assert back.BurnedInAnnotation == "YES"
    assert back.SeriesDescription == OVERLAY_SERIES_DESCRIPTION
    assert back.StudyInstanceUID == src.StudyInstanceUID
    assert back.SeriesInstanceUID != src.SeriesInstanceUID
    assert back.SOPInstanceUID != src.SOPInstanceUID
    assert np.array_equal(back.pixel_array, picture())
    assert back.Laterality == "R"
    for seq in (back.SourceImageSequence, back.ReferencedImageSequence):
        assert len(seq) == 1
        assert seq[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert seq[0].ReferencedSOPClassUID == src.SOPClassUID
        assert "ReferencedFrameNumber" not in seq[0]  # single-frame source
    for name in COPIED_ATTRIBUTES:
        if name in src:
            assert back[name].value == src[name].value, name
    assert str(back.PatientName) == PHI["PatientName"]


def test_overlay_of_a_frame_references_that_frame():
    example = ROOT / "examples" / "fundus" / "img_0015_multiframe.dcm"
    sc = capture(example, frame=1, lat="L")
    assert sc.SourceImageSequence[0].ReferencedFrameNumber == 2  # 1-based in DICOM
    assert sc.ReferencedImageSequence[0].ReferencedFrameNumber == 2
    assert sc.PatientID == "SYNTH-0002"


def test_uids_are_deterministic_and_follow_the_content(sources):
    a, b = capture(sources[0]), capture(sources[0])
    assert a.SOPInstanceUID == b.SOPInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    other = capture(sources[0], pic=picture(1))
    assert other.SOPInstanceUID != a.SOPInstanceUID  # new content, new instance
    assert other.SeriesInstanceUID == a.SeriesInstanceUID
    new_key = capture(sources[0], key="k2")
    assert new_key.SeriesInstanceUID != a.SeriesInstanceUID  # new settings, new series
    left = capture(sources[1], lat="L")
    assert left.SeriesInstanceUID != a.SeriesInstanceUID  # one series per eye
    assert left.StudyInstanceUID == a.StudyInstanceUID


@pytest.mark.parametrize("size", [1001, 1002])  # odd and even lengths
def test_encapsulated_pdf_holds_the_pdf_byte_for_byte(sources, tmp_path, size):
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 3 + b"x" * (size - 9 - 768)
    assert len(pdf) == size
    doc = study_document([read_source(p) for p in sources], pdf, output_key="k")
    path = tmp_path / "doc.dcm"
    doc.save_as(path, enforce_file_format=True)
    back = pydicom.dcmread(path)
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
    assert back.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert encapsulated_pdf(back) == pdf
    refs = {item.ReferencedSOPInstanceUID for item in back.SourceInstanceSequence}
    assert refs == {str(pydicom.dcmread(p).SOPInstanceUID) for p in sources}
    assert back.StudyInstanceUID == pydicom.dcmread(sources[0]).StudyInstanceUID
    assert back.Modality == "DOC"
    again = study_document([read_source(p) for p in sources], pdf, output_key="k")
    assert again.SOPInstanceUID == doc.SOPInstanceUID


def test_read_source_refuses_files_without_uids(tmp_path):
    ds = build_dicom(rgb_fundus())
    del ds.StudyInstanceUID
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    assert read_source(tmp_path / "x.dcm") is None
    (tmp_path / "y.dcm").write_bytes(b"garbage" * 40)
    assert read_source(tmp_path / "y.dcm") is None
    assert "Source(frames=1)" == repr(read_source(ROOT / "examples/fundus/img_0009.dcm"))


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed")
def test_objects_pass_dciodvfy(sources, tmp_path):
    example = ROOT / "examples" / "fundus" / "img_0015_multiframe.dcm"
    objects = {
        "sc.dcm": capture(sources[0]),
        "sc_frame.dcm": capture(example, frame=0, lat="L"),
        "pdf.dcm": study_document([read_source(p) for p in sources], b"%PDF-1.4\n%%EOF\n",
                                  output_key="k"),
    }
    for name, ds in objects.items():
        ds.save_as(tmp_path / name, enforce_file_format=True)
        assert dciodvfy_errors(tmp_path / name) == [], name


def test_building_objects_logs_and_warns_nothing(tmp_path, caplog):
    import logging
    import warnings

    ds = build_dicom(rgb_fundus())
    ds.PatientName = "Jane Doe Smith"  # no caret: highdicom would warn, quoting the name
    ds.save_as(tmp_path / "s.dcm", enforce_file_format=True)
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        capture(tmp_path / "s.dcm")
        study_document([read_source(tmp_path / "s.dcm")], b"%PDF-1.4\n", output_key="k")
    assert not caught
    assert not [r for r in caplog.records if r.name.startswith(("highdicom", "pydicom"))]


def test_objects_do_not_depend_on_the_clock(sources, monkeypatch):
    """Built a day apart, the same object is the same bytes: its dates are the ``created`` time
    it is given, never the build's clock (highdicom's dates, its own contribution entry)."""
    created = datetime.datetime(2025, 3, 1, 9, 15, tzinfo=datetime.timezone.utc)

    def build() -> list[bytes]:
        sources_ = [read_source(p) for p in sources]
        objects = [overlay_capture(sources_[0], picture(), frame=None, laterality="R",
                                   output_key="k", instance_number=1, derivation="IG",
                                   created=created),
                   study_document(sources_, b"%PDF-1.4\n", output_key="k", created=created)]
        encoded = []
        for ds in objects:
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            encoded.append(buffer.getvalue())
        return encoded

    today = build()
    shift_clock(monkeypatch, datetime.timedelta(days=1, seconds=7))
    assert build() == today
    sc = pydicom.dcmread(io.BytesIO(today[0]))
    local = created.astimezone()
    assert sc.ContentDate == sc.InstanceCreationDate == local.strftime("%Y%m%d")
    assert sc.ContentTime == local.strftime("%H%M%S")
