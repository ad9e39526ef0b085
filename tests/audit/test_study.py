# SPDX-License-Identifier: Apache-2.0
"""Study ids (keyed hashes) and laterality from file names."""
from __future__ import annotations

import hashlib
import hmac
import os
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from medig.audit.study import (
    SECRET_NAME,
    audit_secret,
    keyed_id,
    laterality_from_name,
    row_identity,
    study_fields,
)
from medig.io.dicom_ids import DicomIds

UID = "1.2.826.0.1.3680043.8.498.12345678901234567890"


@pytest.mark.parametrize("name, eye", [
    ("10_left.jpeg", "L"), ("10_right.jpeg", "R"), ("P7_OD.png", "R"), ("P7_OS.png", "L"),
    ("scan-L.jpg", "L"), ("scan_R_2.tif", "R"), ("right eye.jpg", "R"), ("a/b/LE.png", "L"),
    ("img_od.dcm", "R"), ("ROD.jpg", None), ("slide.png", None), ("LR.png", None),
    ("R_to_L.jpg", None), ("olds.png", None), ("Ldr.png", None), ("closed_OS", "L"),
    ("od/img1.jpg", None),  # folders are not read: only the file name
])
def test_laterality_hints_are_whole_words(name, eye):
    assert laterality_from_name(name) == eye


def test_secret_is_created_once_private_and_stable(tmp_path):
    secret = audit_secret(tmp_path)
    path = tmp_path / ".medig" / SECRET_NAME
    assert len(secret) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert audit_secret(tmp_path) == secret
    assert audit_secret(tmp_path / "other") != secret
    assert not list((tmp_path / ".medig").glob("*.tmp"))


def test_concurrent_creation_agrees_on_one_secret(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        secrets = set(pool.map(lambda _: audit_secret(tmp_path), range(32)))
    assert len(secrets) == 1


def test_study_id_is_a_keyed_hash_not_the_uid(tmp_path):
    secret = audit_secret(tmp_path)
    ids = DicomIds(UID, None, "1.2.3", "1.2.840.10008.5.1.4.1.1.77.1.5.1", "R")
    fields = study_fields(secret, "x/a.dcm", ids)
    expected = hmac.new(secret, b"study\0" + UID.encode(), hashlib.sha256).hexdigest()[:16]
    assert fields == {"study": expected, "study_source": "dicom", "laterality": "R",
                      "laterality_source": "dicom"}
    assert UID not in str(fields) and "1234567890" not in fields["study"]
    # an unkeyed hash of the UID (guessable by anyone who has the UID) is not what is written
    assert fields["study"] != hashlib.sha256(UID.encode()).hexdigest()[:16]
    assert study_fields(audit_secret(tmp_path / "b"), "x/a.dcm", ids)["study"] != expected


def test_same_study_same_id_and_fallbacks(tmp_path):
    secret = audit_secret(tmp_path)
    right = study_fields(secret, "p/od.dcm", DicomIds(UID, None, "1.1", "1.2", "R"))
    left = study_fields(secret, "p/os.dcm", DicomIds(UID, None, "1.3", "1.2", None))
    assert right["study"] == left["study"]
    assert (left["laterality"], left["laterality_source"]) == ("L", "file name")
    a = study_fields(secret, "site/10_left.jpeg", None)
    b = study_fields(secret, "site/10_right.png", None)
    c = study_fields(secret, "other/10_right.png", None)
    assert a["study"] == b["study"] != c["study"] and a["study_source"] == "file name"
    lone = study_fields(secret, "site/img.png", None)
    assert lone["study_source"] == "image" and lone["laterality"] is None
    assert lone["study"] != study_fields(secret, "site/img2.png", None)["study"]
    # DICOM laterality wins over the file name
    assert study_fields(secret, "x_L.dcm", None, laterality="R")["laterality"] == "R"
    assert keyed_id(secret, "image", "a") != keyed_id(secret, "name", "a")


def test_names_are_hashed_as_their_bytes(tmp_path):
    secret = audit_secret(tmp_path)
    raw = b"caf\xe9_left.jpg"  # Latin-1, not UTF-8: os.fsdecode keeps \xe9 as a surrogate escape
    expected = hmac.new(secret, b"image\0" + raw, hashlib.sha256).hexdigest()[:16]
    assert keyed_id(secret, "image", os.fsdecode(raw)) == expected
    # a UTF-8 name keeps the id it always had
    utf8 = hmac.new(secret, "image\0café.jpg".encode(), hashlib.sha256).hexdigest()[:16]
    assert keyed_id(secret, "image", "café.jpg") == utf8
    fields = study_fields(secret, os.fsdecode(b"p/" + raw), None)
    assert (fields["laterality"], fields["study_source"]) == ("L", "file name")
    assert fields["study"] == study_fields(secret, os.fsdecode(b"p/caf\xe9_R.png"), None)["study"]


def test_stored_work_says_only_what_the_content_says(tmp_path):
    # Work is shared by every name with the same bytes: what one name said is not another's.
    secret = audit_secret(tmp_path)
    other = study_fields(secret, "c.jpg", None)
    assert row_identity(secret, "a_left.jpg", other) == study_fields(secret, "a_left.jpg", None)
    dicom = study_fields(secret, "x.dcm", DicomIds(UID, None, "1.1", "1.2", "R"))
    mine = row_identity(secret, "y_left.dcm", dicom)
    assert mine == {"study": dicom["study"], "study_source": "dicom", "laterality": "R",
                    "laterality_source": "dicom"}


def test_unreadable_image_keeps_its_study_and_eye(tmp_path):
    # One eye's pixel data is cut short: its row is an error, yet its header still names the study,
    # so the study's page lists it as unreadable under the right eye.
    from medig.audit import read_results
    from medig.cli import EXIT_SOME_FILES_FAILED, main
    from tests.io.conftest import build_dicom, rgb_fundus

    folder = tmp_path / "in"
    folder.mkdir()
    study = None
    for eye in ("R", "L"):
        ds = build_dicom(rgb_fundus(64, 64, seed=len(eye)), laterality=eye)
        ds.StudyInstanceUID = study = study or ds.StudyInstanceUID
        ds.save_as(folder / f"{eye}.dcm", enforce_file_format=True)
    data = (folder / "R.dcm").read_bytes()
    (folder / "R.dcm").write_bytes(data[: len(data) - 500])
    out = tmp_path / "out"
    code = main(["audit", str(folder), "--out", str(out), "--model",
                 "tests.audit.tiny_models:make_tiny", "--classes", "a", "b", "--size", "64",
                 "--workers", "0", "--quiet", "--per-study"])
    assert code == EXIT_SOME_FILES_FAILED
    rows = {r["path"]: r for r in read_results(out / "results.jsonl")}
    assert rows["R.dcm"]["status"] == "error" and rows["L.dcm"]["status"] == "ok"
    assert rows["R.dcm"]["study"] == rows["L.dcm"]["study"]
    assert rows["R.dcm"]["laterality"] == "R" and rows["R.dcm"]["study_source"] == "dicom"
    import pypdf

    page = pypdf.PdfReader(str(out / "studies" / f"{rows['L.dcm']['study']}.pdf")).pages[0]
    text = page.extract_text()
    assert "Right eye (OD), R.dcm: Could not be read" in text.replace("\n", " ")
    assert len(list((out / "studies").glob("*.pdf"))) == 1
