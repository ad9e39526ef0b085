# SPDX-License-Identifier: Apache-2.0
"""Batch step ``StudyIdentity`` (what a file's content says: DICOM study and eye) and audit step
``IdentifyRows`` (every final row's study and eye, from its own name unless DICOM)."""
from __future__ import annotations

import hashlib
import hmac

import pydicom

import medig.audit.steps.study as study_step
from medig.audit.inputs import AuditInput
from medig.audit.steps.preprocess import Laterality
from medig.audit.steps.study import IdentifyRows, StudyIdentity
from medig.audit.study import audit_secret
from tests.audit.steps.kit import finished, make_batch, make_context, photographs
from tests.io.conftest import build_dicom


def _keyed(secret: bytes, kind: str, value: str) -> str:
    return hmac.new(secret, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()[:16]


def _dicom(tmp_path, name="eye.dcm", laterality="L"):
    pixels = photographs(1, seed=14)[0]
    path = tmp_path / name
    build_dicom(pixels.permute(1, 2, 0).numpy(), laterality=laterality).save_as(
        path, enforce_file_format=True)
    uid = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    return AuditInput(path=path, rel=name, size=path.stat().st_size), pixels, uid


def test_a_dicom_study_is_a_keyed_hash_of_its_uid_and_a_png_says_nothing(tmp_path) -> None:
    ctx = make_context(tmp_path / "out")
    item, pixels, uid = _dicom(tmp_path)
    batch = make_batch(ctx, tmp_path / "in", pixels=[pixels, pixels])
    batch.inputs[1] = item
    batch.metadata[1] = {"format": "dicom", "ImageLaterality": "L"}
    Laterality()(batch)
    StudyIdentity(ctx)(batch)
    secret = audit_secret(ctx.out_dir)
    assert batch.fields[0] == {"laterality": None, "laterality_source": None, "study": None,
                               "study_source": None}
    assert batch.fields[1] == {"laterality": "L", "laterality_source": "dicom",
                               "study": _keyed(secret, "study", uid), "study_source": "dicom"}
    assert uid not in str(batch.fields)  # never the UID itself


def test_the_header_of_a_multi_frame_file_is_read_once(tmp_path, monkeypatch) -> None:
    ctx = make_context(tmp_path / "out")
    item, pixels, uid = _dicom(tmp_path, laterality=None)
    reads = []
    real = study_step.read_dicom_ids
    monkeypatch.setattr(study_step, "read_dicom_ids", lambda p: reads.append(p) or real(p))
    batch = make_batch(ctx, tmp_path / "in", pixels=[pixels] * 3)
    batch.inputs = [item] * 3
    batch.frames = [0, 1, 2]
    batch.metadata = [{"format": "dicom"}] * 3
    step = StudyIdentity(ctx)
    step(batch)
    step(batch)  # the next batch starts with the same file's frames: still the same header
    assert reads == [item.path]
    assert {f["study"] for f in batch.fields} == {_keyed(audit_secret(ctx.out_dir), "study", uid)}
    assert all(f["laterality"] is None for f in batch.fields)  # the header names no eye


def test_rows_get_their_study_and_eye_from_their_own_names(tmp_path) -> None:
    ctx = make_context(tmp_path / "out")
    dicom, _, uid = _dicom(tmp_path, name="broken.dcm", laterality="R")
    items = [AuditInput(tmp_path / n, n, 1) for n in ("p1_left.png", "p1_right.png", "solo.png")]
    rows = [{"status": "ok", "path": "p1_left.png", "laterality": None},
            {"status": "ok", "path": "p1_right.png", "laterality": "L",
             "laterality_source": "dicom"},  # stored from the content: kept
            {"status": "ok", "path": "solo.png"},
            {"status": "error", "path": "broken.dcm"}]  # not decoded: its header still read
    IdentifyRows()(finished(ctx, [*items, dicom], rows, keys=["k"] * 4))
    secret = audit_secret(ctx.out_dir)
    left, right, solo, broken = rows
    assert (left["laterality"], left["laterality_source"]) == ("L", "file name")
    assert (right["laterality"], right["laterality_source"]) == ("L", "dicom")
    assert left["study"] == right["study"] == _keyed(secret, "name", "./p1")
    assert left["study_source"] == "file name"
    assert solo["study"] == _keyed(secret, "image", "solo.png") and solo["laterality"] is None
    assert (solo["study_source"], solo["laterality_source"]) == ("image", None)
    assert broken["study"] == _keyed(secret, "study", uid) and broken["study_source"] == "dicom"
    assert (broken["laterality"], broken["laterality_source"]) == ("R", "dicom")


def test_no_rows_no_secret(tmp_path) -> None:
    ctx = make_context(tmp_path / "out")
    IdentifyRows()(finished(ctx, [], []))
    assert not (ctx.out_dir / ".medig").exists()
