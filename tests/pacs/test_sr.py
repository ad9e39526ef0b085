# SPDX-License-Identifier: Apache-2.0
"""The Measurement Report (TID 1500, Enhanced SR) of one image: valid, coded, references its
source, independent of the clock, and read back into the row it was made from."""
from __future__ import annotations

import datetime
import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from medig.pacs import read_sr
from medig.pacs.coding import CONCEPTS, SCHEME, class_code
from medig.pacs.maps import evidence_segmentation
from medig.pacs.objects import Source, read_source
from medig.pacs.sr import NUMERIC_FIELDS, SR_SERIES_DESCRIPTION, Algorithm, measurement_report
from tests.io.conftest import PHI, build_dicom, rgb_fundus
from tests.pacs.conftest import shift_clock
from tests.pacs.test_objects import DCIODVFY, dciodvfy_errors

ROOT = Path(__file__).resolve().parents[2]
MULTIFRAME = ROOT / "examples" / "fundus" / "img_0015_multiframe.dcm"
CREATED = datetime.datetime(2025, 3, 1, 9, 15, tzinfo=datetime.timezone.utc)
SHA = "ab" * 32

#: A result row as the audit writes it (figures with the audit's 6 significant digits).
ROW: dict[str, Any] = {
    "path": "patient0_0.dcm", "status": "ok", "predicted": "referable", "predicted_index": 1,
    "probabilities": {"healthy": 0.282467, "referable": 0.717533}, "target": "referable",
    "target_index": 1, "score": 0.717533, "baseline_score": 0.229987, "delta": -0.000523231,
    "relative_error": 0.00107263, "n_steps": 16, "flagged": False, "abs_tol": 0.00487546,
    "baseline_agreement": 0.0559441, "faithfulness": 0.2794, "trust_flags": ["baseline-dependent"],
    "quality": "ungradeable", "quality_reasons": ["too small: field of view 94 px across",
                                                  "out of focus"],
}
ALGORITHM = Algorithm("tests.audit.tiny_models:make_tiny", SHA, ["output probability"])


def report(source: Source, row: dict[str, Any] | None = None, frame: int | None = None,
           created: datetime.datetime | None = CREATED, **extra: Any) -> pydicom.Dataset:
    return measurement_report(source, row or ROW, frame=frame, algorithm=ALGORITHM,
                              sanity="passed", output_key="k", instance_number=1,
                              created=created, **extra)


def segmentation(source: Source, frame: int | None = None,
                 created: datetime.datetime | None = CREATED) -> pydicom.Dataset:
    rows, cols = int(source.dataset.Rows), int(source.dataset.Columns)
    masks = np.zeros((rows, cols, 2), dtype=bool)
    masks[2:6, 3:9, 0] = True
    masks[10:12, 20:25, 1] = True
    return evidence_segmentation(source, masks, frame=frame, output_key="k", instance_number=1,
                                 description="test", created=created)


@pytest.fixture
def source_path(tmp_path: Path) -> Path:
    ds = build_dicom(rgb_fundus(48, 64), laterality="R")
    ds.StudyTime, ds.StudyID, ds.PatientSex = "101500", "S-1", "F"
    ds.save_as(tmp_path / "src.dcm", enforce_file_format=True)
    return tmp_path / "src.dcm"


def saved(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def items(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    out = []

    def walk(seq: Any) -> None:
        for item in seq or []:
            out.append(item)
            walk(item.get("ContentSequence"))

    walk(ds.ContentSequence)
    return out


def test_the_numbers_read_back_are_the_rows_figures(source_path, tmp_path):
    back = read_sr(saved(report(read_source(source_path)), tmp_path / "sr.dcm"))
    for key in ("score", "baseline_score", "delta", "relative_error", "n_steps", "abs_tol",
                "baseline_agreement", "faithfulness"):
        assert back[key] == ROW[key], key
    assert isinstance(back["n_steps"], int)
    assert back["probabilities"] == {"referable": ROW["probabilities"]["referable"]}
    assert "map_error" not in back  # the row has no such column: no item
    assert back["predicted"] == back["target"] == "referable"
    assert back["flagged"] is False and back["completeness"] == "complete"
    assert back["trust_flags"] == ["baseline-dependent"]
    assert back["agreement_verdict"] == "baseline-dependent"
    assert back["faithfulness_verdict"] == "faithful"
    assert back["sanity_check"] == "passed"
    assert back["quality"] == "ungradeable" and back["quality_reasons"] == ROW["quality_reasons"]


def test_map_error_and_the_map_figures_are_items_when_they_exist(source_path, tmp_path):
    row = {**ROW, "map_error": 0.0314159, "flagged": True, "trust_flags": ["incomplete"],
           "flag_reason": "map error 3.1% > 2%"}
    back = read_sr(saved(report(read_source(source_path), row,
                                map_figures={"map_scale": 0.25, "map_threshold": 0.0125}),
                         tmp_path / "sr.dcm"))
    assert back["map_error"] == 0.0314159
    assert (back["map_scale"], back["map_threshold"]) == (0.25, 0.0125)
    assert back["flagged"] is True and back["completeness"] == "incomplete"
    assert back["flag_reason"] == "map error 3.1% > 2%"


def test_figures_the_row_lacks_are_left_out(source_path, tmp_path):
    row = {**ROW, "baseline_agreement": None, "faithfulness": float("nan"), "trust_flags": []}
    ds = report(read_source(source_path), row)
    numbers = {i.ConceptNameCodeSequence[0].CodeValue for i in items(ds) if i.ValueType == "NUM"}
    assert CONCEPTS["baseline_agreement"][0] not in numbers
    assert CONCEPTS["faithfulness"][0] not in numbers
    assert CONCEPTS["score"][0] in numbers
    back = read_sr(saved(ds, tmp_path / "sr.dcm"))
    assert back["agreement_verdict"] == back["faithfulness_verdict"] == "not measured"


def test_the_predicted_class_is_coded_and_named(source_path):
    ds = report(read_source(source_path))
    codes = [(i.ConceptNameCodeSequence[0].CodeMeaning, i.ConceptCodeSequence[0])
             for i in items(ds) if i.ValueType == "CODE"]
    finding = [c for name, c in codes if name == "Finding"]
    assert [(c.CodeValue, c.CodingSchemeDesignator) for c in finding] == [("4855003", "SCT")]
    predicted = [c for name, c in codes if name == "Predicted class"]
    assert predicted[0].CodeMeaning == "Diabetic retinopathy"
    texts = {i.ConceptNameCodeSequence[0].CodeMeaning: i.TextValue for i in items(ds)
             if i.ValueType == "TEXT"}
    assert texts["Predicted class name"] == "referable"


def test_a_class_without_a_snomed_code_gets_a_stable_private_code():
    a, b = class_code("Grade 7 (custom)"), class_code("Grade 7 (custom)")
    assert (a.scheme_designator, a.meaning) == (SCHEME, "Grade 7 (custom)")
    assert a.value == b.value and len(a.value) <= 16
    assert class_code("Grade 8 (custom)").value != a.value
    assert class_code("No_DR").value == class_code("healthy").value == "17621005"
    assert class_code("back\\slash").meaning == "back slash"  # LO holds no backslash


def test_the_observer_is_the_algorithm_with_model_and_weights(source_path):
    ds = report(read_source(source_path))
    texts = [(i.ConceptNameCodeSequence[0].CodeMeaning, str(i.get("TextValue", "")))
             for i in items(ds)]
    assert ("Algorithm Name", "medig Integrated Gradients") in texts
    import medig

    assert ("Algorithm Version", medig.__version__) in texts
    parameters = [v for name, v in texts if name == "Algorithm Parameters"]
    assert f"weights SHA-256 {SHA}" in parameters
    assert "model tests.audit.tiny_models:make_tiny" in parameters
    observer = [str(i.get("TextValue", "")) for i in items(ds)
                if i.ConceptNameCodeSequence[0].CodeMeaning == "Device Observer Name"]
    assert observer == ["medig"]


def test_the_report_references_its_source_and_is_filed_to_its_study(source_path):
    src = pydicom.dcmread(source_path)
    ds = report(read_source(source_path))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.PatientID == src.PatientID
    assert str(ds.PatientName) == PHI["PatientName"]
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert ds.SeriesDescription == SR_SERIES_DESCRIPTION
    images = [i for i in items(ds) if i.ValueType == "IMAGE"]
    assert [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images] == [
        src.SOPInstanceUID]
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0]
    ref = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID


def test_a_frame_is_referenced_by_its_number():
    ds = report(read_source(MULTIFRAME), frame=1)
    images = [i for i in items(ds) if i.ValueType == "IMAGE"]
    assert images[0].ReferencedSOPSequence[0].ReferencedFrameNumber == 2  # 1-based in DICOM
    seg = segmentation(read_source(MULTIFRAME), frame=1)
    for frame_group in seg.PerFrameFunctionalGroupsSequence:
        ref = frame_group.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedFrameNumber == 2
        assert ref.ReferencedSOPClassUID == pydicom.dcmread(MULTIFRAME).SOPClassUID


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed")
def test_report_and_segmentation_pass_dciodvfy(source_path, tmp_path):
    objects = {"sr.dcm": report(read_source(source_path)),
               "sr_frame.dcm": report(read_source(MULTIFRAME), frame=0),
               "seg.dcm": segmentation(read_source(source_path)),
               "seg_frame.dcm": segmentation(read_source(MULTIFRAME), frame=1),
               "sr_undated.dcm": report(read_source(source_path), created=None),
               "seg_undated.dcm": segmentation(read_source(source_path), created=None)}
    for name, ds in objects.items():
        assert dciodvfy_errors(saved(ds, tmp_path / name)) == [], name


def test_the_objects_do_not_depend_on_the_clock(source_path, monkeypatch):
    def build() -> list[bytes]:
        source = read_source(source_path)
        out = []
        for ds in (report(source), segmentation(source)):
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            out.append(buffer.getvalue())
        return out

    today = build()
    shift_clock(monkeypatch, datetime.timedelta(days=2, seconds=13))
    assert build() == today
    local = CREATED.astimezone()
    for data in today:
        ds = pydicom.dcmread(io.BytesIO(data))
        assert ds.ContentDate == ds.InstanceCreationDate == local.strftime("%Y%m%d")
        assert ds.ContentTime == local.strftime("%H%M%S")


def test_uids_follow_the_content(source_path):
    source = read_source(source_path)
    a, b = report(source), report(source)
    assert a.SOPInstanceUID == b.SOPInstanceUID
    other = report(source, {**ROW, "score": 0.5})
    assert other.SOPInstanceUID != a.SOPInstanceUID
    assert other.SeriesInstanceUID == a.SeriesInstanceUID


def test_read_sr_refuses_other_objects(source_path):
    with pytest.raises(ValueError, match="not a medig Measurement Report"):
        read_sr(source_path)


def test_every_numeric_field_has_a_private_concept():
    assert set(NUMERIC_FIELDS) <= set(CONCEPTS)
    values = [v for v, _ in CONCEPTS.values()]
    assert len(values) == len(set(values))


def test_building_logs_and_warns_nothing_and_survives_odd_names(tmp_path, caplog):
    """A name highdicom would warn about (no caret, quoting it), a model path and a class name
    read from a non-UTF-8 file system (surrogate escapes): no warning, no log line, valid text."""
    import logging
    import warnings

    ds = build_dicom(rgb_fundus())
    ds.PatientName = "Jane Doe Smith"
    ds.save_as(tmp_path / "s.dcm", enforce_file_format=True)
    source = read_source(tmp_path / "s.dcm")
    odd = b"/models/r\xe9tine.pt".decode("utf-8", "surrogateescape")
    row = {**ROW, "predicted": "grade\udce9", "target": "grade\udce9"}
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sr = measurement_report(source, row, frame=None, algorithm=Algorithm(odd, None, []),
                                sanity="passed", output_key="k", instance_number=1)
        segmentation(source)
    assert not caught
    assert not [r for r in caplog.records if r.name.startswith(("highdicom", "pydicom"))]
    back = read_sr(saved(sr, tmp_path / "sr.dcm"))
    assert back["predicted"] == "grade\ufffd"
