# SPDX-License-Identifier: Apache-2.0
"""C-STORE with retries and the send log, against pynetdicom's own storage SCP."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medig.pacs.objects import overlay_capture, read_source, study_document
from medig.pacs.send import (
    SENT_LOG,
    Destination,
    acknowledged,
    parse_destination,
    read_log,
    send_objects,
)
from tests.io.conftest import build_dicom, rgb_fundus
from tests.pacs.conftest import StorageSCP, free_port


@pytest.fixture
def objects(tmp_path) -> list[Path]:
    """Four Secondary Captures and one Encapsulated PDF written under ``dicom/``."""
    src_path = tmp_path / "src.dcm"
    build_dicom(rgb_fundus()).save_as(src_path, enforce_file_format=True)
    source = read_source(src_path)
    folder = tmp_path / "dicom"
    folder.mkdir()
    paths = []
    for k in range(4):
        pic = np.full((16, 24, 3), 40 * k, np.uint8)
        ds = overlay_capture(source, pic, frame=None, laterality="R", output_key="k",
                             instance_number=k + 1, derivation="test")
        paths.append(folder / f"sc{k}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    study_document([source], b"%PDF-1.4\n%%EOF\n", output_key="k").save_as(
        folder / "study.dcm", enforce_file_format=True)
    return paths + [folder / "study.dcm"]


def uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def acks(folder: Path) -> Counter:
    return Counter(e["sop_instance_uid"] for e in read_log(folder / SENT_LOG)
                   if e["status"] == "acknowledged")


def test_parse_destination():
    assert parse_destination("PACS@pacs.example.org:104") == Destination("PACS", "pacs.example.org",
                                                                         104)
    assert parse_destination("A B@[::1]:11112") == Destination("A B", "::1", 11112)
    assert str(Destination("X", "::1", 5)) == "X@[::1]:5"
    for bad in ("PACS@host", "@host:104", "P@h:0", "P@h:70000", "WAYTOOLONGAETITLE1@h:1",
                "BACK\\SLASH@h:1", "P@h:1x"):
        with pytest.raises(ValueError):
            parse_destination(bad)


def test_every_object_is_stored_and_logged_once(objects, scp):
    folder = objects[0].parent
    dest = parse_destination(scp.destination)
    result = send_objects(objects, folder, dest, "MEDIGTEST")
    assert result.complete and result.acknowledged == len(objects)
    stored = scp.stored()
    assert set(stored) == {uid(p) for p in objects}
    for path in objects:  # what arrived is what is on disk
        assert stored[uid(path)].PatientName == pydicom.dcmread(path).PatientName
    assert acks(folder) == Counter({uid(p): 1 for p in objects})
    lines = read_log(folder / SENT_LOG)
    assert {e["file"] for e in lines} == {p.name for p in objects}
    assert all(e["destination"] == str(dest) and e["dimse_status"] == "0x0000" for e in lines)
    # a re-run sends nothing: everything is acknowledged
    n = len(scp.received)
    again = send_objects(objects, folder, dest)
    assert again.complete and again.acknowledged == 0 and again.already == len(objects)
    assert len(scp.received) == n
    assert acknowledged(folder / SENT_LOG, dest) == {uid(p) for p in objects}


def test_refused_association_retries_with_backoff_and_keeps_files(objects, tmp_path):
    folder = objects[0].parent
    waits: list[float] = []
    dest = Destination("PACS", "127.0.0.1", free_port())  # nobody listens there
    result = send_objects(objects, folder, dest, attempts=4, backoff_s=0.5, sleep=waits.append)
    assert not result.complete and len(result.failed) == len(objects)
    assert waits == [0.5, 1.0, 2.0]  # exponential backoff between the 4 attempts
    assert all(p.is_file() for p in objects)  # nothing lost
    assert all(e["status"] == "failed" for e in read_log(folder / SENT_LOG))

    # the PACS comes up while medig waits: a later attempt succeeds
    late = StorageSCP(tmp_path / "late", aet="PACS")
    dest = Destination("PACS", "127.0.0.1", late.port)
    try:
        result = send_objects(objects, folder, dest, attempts=3, backoff_s=0.1,
                              sleep=lambda s: late.start() if late.server is None else None)
        assert result.complete and result.acknowledged == len(objects)
        assert set(late.stored()) == {uid(p) for p in objects}
    finally:
        late.stop()


def test_called_aet_mismatch_is_a_rejected_association(objects, tmp_path):
    folder = objects[0].parent
    server = StorageSCP(tmp_path / "archive", aet="PACS").start()
    server.server.ae.require_called_aet = True  # associations to another AE title are rejected
    try:
        result = send_objects(objects, folder, Destination("OTHER", "127.0.0.1", server.port),
                              attempts=2, backoff_s=0, sleep=lambda s: None)
        assert not result.complete
        assert {e["reason"] for e in read_log(folder / SENT_LOG)} == {"association rejected"}
    finally:
        server.stop()


def test_dropped_association_resends_only_the_rest(objects, tmp_path):
    folder = objects[0].parent
    server = StorageSCP(tmp_path / "archive", abort_after=2).start()
    try:
        dest = parse_destination(server.destination)
        result = send_objects(objects, folder, dest, attempts=3, backoff_s=0,
                              sleep=lambda s: None)
        assert result.complete
        assert acks(folder) == Counter({uid(p): 1 for p in objects})
        assert set(server.stored()) == {uid(p) for p in objects}
    finally:
        server.stop()


def test_an_object_the_pacs_refuses_is_logged_and_retried_next_run(objects, tmp_path):
    folder = objects[0].parent
    server = StorageSCP(tmp_path / "archive", status=0xA700).start()  # out of resources
    try:
        dest = parse_destination(server.destination)
        result = send_objects(objects, folder, dest)
        assert not result.complete and "0xA700" in result.failed[0]
        assert {e["dimse_status"] for e in read_log(folder / SENT_LOG)} == {"0xA700"}
        server.status = 0x0000
        result = send_objects(objects, folder, dest)
        assert result.complete and result.acknowledged == len(objects)
        assert acks(folder) == Counter({uid(p): 1 for p in objects})
    finally:
        server.stop()


def test_a_line_cut_by_a_crash_does_not_hide_the_next(objects, scp):
    folder = objects[0].parent
    (folder / SENT_LOG).write_text('{"destination": "X", "status": "ackno')  # kill -9 mid-write
    send_objects(objects[:1], folder, parse_destination(scp.destination))
    lines = (folder / SENT_LOG).read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["status"] == "acknowledged"


def test_a_damaged_send_log_line_does_not_stop_a_later_send(objects, scp, caplog):
    # One byte that is not UTF-8 in one line used to make every later --send fail. The damaged
    # line is ignored (its object is sent again, under the same SOP Instance UID); the others
    # still count, so acknowledged objects are not sent twice.
    import logging

    folder = objects[0].parent
    dest = parse_destination(scp.destination)
    assert send_objects(objects[:2], folder, dest).complete
    log = folder / SENT_LOG
    first, second = log.read_bytes().splitlines()
    damaged = second.replace(b'"status"', b'"st\xffatus"')
    log.write_bytes(first + b"\n" + damaged + b"\n" + b'{"cut by a cra')
    n = len(scp.received)
    with caplog.at_level(logging.WARNING, logger="medig"):
        result = send_objects(objects, folder, dest)
    warnings = [r.getMessage() for r in caplog.records if r.name == "medig"]
    assert len(warnings) == 1 and "1 damaged line" in warnings[0]  # the cut line is silent
    assert result.complete and result.already == 1 and result.acknowledged == len(objects) - 1
    assert len(scp.received) == n + len(objects) - 1  # the first object is not sent again
    assert acknowledged(log, dest) == {uid(p) for p in objects}


@pytest.mark.parametrize("entry", [[], {"destination": 5, "sop_instance_uid": "1.2",
                                         "status": "acknowledged"}, "text", None])
def test_send_log_lines_that_are_no_entries_are_ignored(tmp_path, entry):
    log = tmp_path / SENT_LOG
    good = {"destination": "P@h:1", "sop_instance_uid": "1.2.3", "status": "acknowledged"}
    log.write_text(json.dumps(entry) + "\n" + json.dumps(good) + "\n")
    assert read_log(log) == [good]
    assert acknowledged(log, "P@h:1") == {"1.2.3"}
