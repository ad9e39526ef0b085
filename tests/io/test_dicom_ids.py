# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pydicom

from medig.io.dicom_ids import read_dicom_ids

ROOT = Path(__file__).resolve().parents[2]


def test_reads_the_uids_and_laterality_from_the_header(make_dicom, kit):
    path = make_dicom(kit.rgb_fundus(), laterality="L")
    ds = pydicom.dcmread(path)
    ids = read_dicom_ids(path)
    assert ids.study_uid == ds.StudyInstanceUID and ids.sop_uid == ds.SOPInstanceUID
    assert ids.series_uid == ds.SeriesInstanceUID and ids.sop_class_uid == kit.OP_8BIT
    assert ids.laterality == "L" and ids.frames == 1
    # never printed: a stray log line or traceback must not show the UIDs
    assert ds.StudyInstanceUID not in repr(ids) + str(ids)


def test_bundled_examples_carry_study_sop_and_laterality():
    for name, frames in (("img_0009.dcm", 1), ("img_0015_multiframe.dcm", 2)):
        ids = read_dicom_ids(ROOT / "examples" / "fundus" / name)
        assert ids.study_uid and ids.sop_uid and ids.laterality == "L" and ids.frames == frames


def test_laterality_falls_back_to_the_series_attribute(make_dicom, kit):
    ds = kit.build_dicom(kit.rgb_fundus(), laterality=None)
    ds.Laterality = "R"
    assert read_dicom_ids(make_dicom(None, dataset=ds)).laterality == "R"
    ds.Laterality = "X"  # not an enumerated value
    assert read_dicom_ids(make_dicom(None, name="x.dcm", dataset=ds)).laterality is None


def test_preamble_less_file_and_invalid_uid(make_dicom, kit):
    ds = kit.build_dicom(kit.rgb_fundus())
    ds.StudyInstanceUID = "Doe^Jane not a uid"
    ids = read_dicom_ids(make_dicom(None, dataset=ds, preamble=False))
    assert ids.study_uid is None and ids.sop_uid == ds.SOPInstanceUID


def test_non_dicom_and_corrupt_files_have_no_identity(tmp_path, caplog):
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    (tmp_path / "b.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x08\x00\x20\x00PN\xff\xff")
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_dicom_ids(tmp_path / "a.jpg") is None
        corrupt = read_dicom_ids(tmp_path / "b.dcm")
        assert corrupt is None or (corrupt.study_uid is None and corrupt.sop_uid is None)
        assert read_dicom_ids(tmp_path / "missing.dcm") is None
    assert not caplog.records and not caught


def test_special_files_are_never_opened(tmp_path):
    # Error rows are identified after the audit: a FIFO among them must not block the audit.
    fifo = tmp_path / "eye.dcm"
    os.mkfifo(fifo)
    assert read_dicom_ids(fifo) is None
