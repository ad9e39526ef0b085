# SPDX-License-Identifier: Apache-2.0
"""Re-runs add nothing to the PACS: the study pages and the DICOM objects of one audit are
byte-identical whenever they are rebuilt (dated by the audit's first run, never by the clock)."""
from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pydicom
import pytest

from medig.cli import EXIT_OK, main
from medig.pacs.export import dicom_objects
from medig.pacs.send import SENT_LOG
from tests.pacs.conftest import TINY_ARGS, StorageSCP, make_studies, shift_clock


def audit(inputs: Path, out: Path, *extra: str) -> int:
    return main(["audit", str(inputs), "--out", str(out), *TINY_ARGS, "--dicom-out",
                 "--include-phi", *extra])


def snapshot(out: Path) -> dict[str, bytes]:
    """Every study page and DICOM object, by path."""
    files = [*(out / "studies").glob("*.pdf"), *dicom_objects(out)]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """One audit of two studies sent to an archive, at today's clock."""
    root = tmp_path_factory.mktemp("rerun")
    make_studies(root / "in")
    server = StorageSCP(root / "archive").start()
    out = root / "out"
    code = audit(root / "in", out, "--send", server.destination)
    yield {"root": root, "in": root / "in", "out": out, "code": code, "scp": server,
           "files": snapshot(out), "manifest": json.loads((out / "manifest.json").read_text())}
    server.stop()


def test_a_rerun_days_later_sends_nothing_and_changes_no_byte(first, tmp_path, monkeypatch):
    assert first["code"] == EXIT_OK
    out = tmp_path / "out"
    shutil.copytree(first["out"], out)
    server = first["scp"]
    received, stored = len(server.received), set(server.stored())
    shift_clock(monkeypatch, datetime.timedelta(days=3, minutes=7))
    assert audit(first["in"], out, "--send", server.destination) == EXIT_OK
    assert snapshot(out) == first["files"]
    assert len(server.received) == received and set(server.stored()) == stored
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["started"] != first["manifest"]["started"]  # the clock did move
    assert manifest["first_started"] == first["manifest"]["first_started"] \
        == first["manifest"]["started"]


def test_objects_rebuilt_later_are_byte_identical_and_file_nothing_new(first, tmp_path,
                                                                      monkeypatch):
    """Deleted objects and pages, rebuilt days later, are the same bytes and UIDs; sending them
    all again (the send log deleted too) stores no new instance."""
    out = tmp_path / "out"
    shutil.copytree(first["out"], out)
    shutil.rmtree(out / "studies")
    shutil.rmtree(out / "dicom")
    server = StorageSCP(tmp_path / "archive").start()
    try:
        assert audit(first["in"], out, "--send", server.destination) == EXIT_OK
        filed = {u: ds.SOPInstanceUID for u, ds in server.stored().items()}
        shift_clock(monkeypatch, datetime.timedelta(days=40, hours=5))
        shutil.rmtree(out / "studies")
        shutil.rmtree(out / "dicom")
        assert audit(first["in"], out, "--send", server.destination) == EXIT_OK
        assert snapshot(out) == first["files"]
        assert {u: ds.SOPInstanceUID for u, ds in server.stored().items()} == filed
        assert len(list(server.folder.glob("*.dcm"))) == len(filed) == 14
    finally:
        server.stop()
    assert (out / "dicom" / SENT_LOG).is_file()


def test_the_objects_are_dated_by_the_audit(first):
    when = datetime.datetime.fromisoformat(first["manifest"]["first_started"]).astimezone()
    for path in dicom_objects(first["out"]):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert (ds.ContentDate, ds.ContentTime) == (when.strftime("%Y%m%d"),
                                                     when.strftime("%H%M%S"))
        assert (ds.InstanceCreationDate, ds.InstanceCreationTime) == (ds.ContentDate,
                                                                      ds.ContentTime)
        if ds.Modality == "OT":  # the Secondary Captures
            assert ds.DateOfSecondaryCapture == ds.ContentDate

