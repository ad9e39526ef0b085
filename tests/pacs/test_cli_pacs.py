# SPDX-License-Identifier: Apache-2.0
"""``medig audit --per-study --dicom-out --include-phi --send``, end to end, on two-eye studies."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medig.audit import read_results
from medig.cli import EXIT_NOT_SENT, EXIT_OK, EXIT_USAGE, main
from medig.pacs import read_sr
from medig.pacs.export import dicom_objects
from medig.pacs.send import SENT_LOG, read_log
from tests.io.conftest import PHI
from tests.pacs.conftest import TINY_ARGS, Orthanc, StorageSCP, encapsulated_pdf, make_studies
from tests.pacs.test_objects import DCIODVFY, dciodvfy_errors

ROOT = Path(__file__).resolve().parents[2]


def audit(inputs: Path, out: Path, *extra: str) -> int:
    return main(["audit", str(inputs), "--out", str(out), *TINY_ARGS, *extra])


def acks(out: Path) -> Counter:
    return Counter(e["sop_instance_uid"] for e in read_log(out / "dicom" / SENT_LOG)
                   if e["status"] == "acknowledged")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One audit of two studies (two eyes each), a JPEG pair and a lone PNG, sent to an SCP."""
    root = tmp_path_factory.mktemp("pacs")
    written = make_studies(root / "in")
    server = StorageSCP(root / "archive").start()
    out = root / "out"
    code = audit(root / "in", out, "--dicom-out", "--include-phi", "--send", server.destination)
    yield {"in": root / "in", "out": out, "code": code, "scp": server, **written}
    server.stop()


def test_dicom_out_without_include_phi_is_refused(tmp_path, capsys):
    make_studies(tmp_path / "in", n_studies=1)
    out = tmp_path / "out"
    assert audit(tmp_path / "in", out, "--dicom-out") == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--include-phi" in err[0]
    assert not out.exists()  # refused before anything was written
    assert audit(tmp_path / "in", out, "--send", "PACS@host") == EXIT_USAGE
    assert audit(tmp_path / "in", out, "--include-phi", "--send", "nonsense") == EXIT_USAGE


def test_rows_carry_study_and_eye(run):
    rows = {r["path"]: r for r in read_results(run["out"] / "results.jsonl")}
    a, b = rows["patient0_0.dcm"], rows["patient0_1.dcm"]
    assert a["study"] == b["study"] != rows["patient1_0.dcm"]["study"]
    assert (a["laterality"], b["laterality"]) == ("R", "L")
    assert a["study_source"] == "dicom" and a["laterality_source"] == "dicom"
    left, right = rows["77_left.jpg"], rows["77_right.jpg"]
    assert left["study"] == right["study"] and left["study_source"] == "file name"
    assert (left["laterality"], right["laterality"]) == ("L", "R")
    assert left["laterality_source"] == "file name"
    assert rows["lone.png"]["study_source"] == "image" and rows["lone.png"]["laterality"] is None
    pages = {p.stem for p in (run["out"] / "studies").glob("*.pdf")}
    assert pages == {r["study"] for r in rows.values()} and len(pages) == 4


def test_one_overlay_per_dicom_image_and_one_pdf_per_dicom_study(run, caplog):
    out = run["out"]
    assert run["code"] == EXIT_OK
    objects = dicom_objects(out)
    names = sorted(p.relative_to(out / "dicom").as_posix() for p in objects)
    rows = {r["path"]: r for r in read_results(out / "results.jsonl")}
    studies = {rows[f"patient{s}_0.dcm"]["study"] for s in (0, 1)}
    assert names == sorted([f"{kind}/patient{s}_{k}.dcm.dcm" for s in (0, 1) for k in (0, 1)
                            for kind in ("overlays", "sr", "maps")]
                           + [f"studies/{s}.dcm" for s in studies])
    for s in (0, 1):
        sources = [pydicom.dcmread(run["in"] / f"patient{s}_{k}.dcm") for k in (0, 1)]
        for k, src in enumerate(sources):
            sc = pydicom.dcmread(out / "dicom" / "overlays" / f"patient{s}_{k}.dcm.dcm")
            assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
            assert sc.StudyInstanceUID == src.StudyInstanceUID
            assert sc.PatientID == src.PatientID and sc.Laterality == ("R", "L")[k]
            assert sc.BurnedInAnnotation == "YES"
        study = rows[f"patient{s}_0.dcm"]["study"]
        doc = pydicom.dcmread(out / "dicom" / "studies" / f"{study}.dcm")
        assert encapsulated_pdf(doc) == (out / "studies" / f"{study}.pdf").read_bytes()
        assert {i.ReferencedSOPInstanceUID for i in doc.SourceInstanceSequence} == {
            s.SOPInstanceUID for s in sources}
        assert doc.StudyInstanceUID == sources[0].StudyInstanceUID


def test_each_dicom_image_has_a_report_of_its_row_and_an_evidence_map(run):
    out = run["out"]
    rows = {r["path"]: r for r in read_results(out / "results.jsonl")}
    for s in (0, 1):
        for k in (0, 1):
            name = f"patient{s}_{k}.dcm"
            row, src = rows[name], pydicom.dcmread(run["in"] / name)
            back = read_sr(out / "dicom" / "sr" / f"{name}.dcm")
            for key in ("score", "baseline_score", "delta", "relative_error", "n_steps"):
                assert back[key] == row[key], (name, key)
            assert back.get("map_error") == row.get("map_error")
            assert back["predicted"] == row["predicted"]
            assert back["trust_flags"] == row["trust_flags"]
            assert back["sanity_check"] == "passed"
            sr = pydicom.dcmread(out / "dicom" / "sr" / f"{name}.dcm")
            seg = pydicom.dcmread(out / "dicom" / "maps" / f"{name}.dcm")
            for ds in (sr, seg):
                assert ds.StudyInstanceUID == src.StudyInstanceUID
                assert ds.PatientID == src.PatientID
            assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
            assert (seg.Rows, seg.Columns) == (src.Rows, src.Columns)  # the source's grid
            assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]\
                .ReferencedSOPInstanceUID == src.SOPInstanceUID
            assert back["map_threshold"] > 0 and np.asarray(seg.pixel_array).any()


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed")
def test_every_output_passes_dciodvfy(run):
    for path in dicom_objects(run["out"]):
        assert dciodvfy_errors(path) == [], path


def test_the_archive_received_each_object_for_the_right_patient(run):
    out, server = run["out"], run["scp"]
    objects = {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p)
               for p in dicom_objects(out)}
    stored = server.stored()
    assert set(stored) == set(objects)
    for uid, ds in stored.items():
        assert ds.PatientID == objects[uid].PatientID in run["patient_ids"]
        assert ds.StudyInstanceUID == objects[uid].StudyInstanceUID
    assert acks(out) == Counter(dict.fromkeys(objects, 1))


def test_patient_identifiers_only_in_dicom_objects(run):
    out = run["out"]
    secret = [v for v in PHI.values()] + run["uids"] + run["patient_ids"]
    derived = [str(pydicom.dcmread(p).SOPInstanceUID) for p in dicom_objects(out)]
    for path in out.rglob("*"):
        if not path.is_file():
            continue
        if path.relative_to(out).parts[0] == "dicom":
            continue
        data = path.read_bytes()
        for value in secret + derived:
            assert value.encode() not in data, f"{value!r} found in {path}"
    # the objects do carry them (positive control for the search above)
    sc = (out / "dicom" / "overlays" / "patient0_0.dcm.dcm").read_bytes()
    assert PHI["PatientName"].encode() in sc and run["uids"][0].encode() in sc


def test_rerun_changes_nothing_and_sends_nothing(run, capsys):
    out, server = run["out"], run["scp"]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in dicom_objects(out)}
    log = (out / "dicom" / SENT_LOG).read_bytes()
    n = len(server.received)
    code = audit(run["in"], out, "--dicom-out", "--include-phi", "--send", server.destination)
    assert code == EXIT_OK
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in dicom_objects(out)} == before
    assert (out / "dicom" / SENT_LOG).read_bytes() == log and len(server.received) == n
    printed = capsys.readouterr()
    assert "dicom: 14 objects" in printed.out
    for value in PHI.values():
        assert value not in printed.out + printed.err


def test_report_per_study_rebuilds_identical_pages(run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run["out"], out)
    pages = {p.name: p.read_bytes() for p in (out / "studies").glob("*.pdf")}
    shutil.rmtree(out / "studies")
    assert main(["report", str(out), "--per-study"]) == EXIT_OK
    assert {p.name: p.read_bytes() for p in (out / "studies").glob("*.pdf")} == pages


def test_unreachable_pacs_exits_4_and_keeps_everything(run, tmp_path, capsys, caplog,
                                                       monkeypatch):
    import medig.pacs.send as send

    out = tmp_path / "copy"
    shutil.copytree(run["out"], out)
    waits: list[float] = []
    monkeypatch.setattr(send, "_sleep", waits.append)
    code = audit(run["in"], out, "--dicom-out", "--include-phi", "--send", "NOBODY@127.0.0.1:9")
    assert code == EXIT_NOT_SENT
    err = capsys.readouterr().err
    assert "14 DICOM object(s) not acknowledged by NOBODY@127.0.0.1:9" in err
    assert len(dicom_objects(out)) == 14 and (out / "report.pdf").is_file()
    assert waits == [2.0, 4.0, 8.0, 16.0]  # retried with backoff before giving up
    assert not [r for r in caplog.records if r.name.startswith("pynetdicom")]  # no noise


@pytest.mark.slow
def test_kill_during_sending_then_rerun_acknowledges_each_object_once(run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run["out"], out)
    (out / "dicom" / SENT_LOG).unlink()
    server = StorageSCP(tmp_path / "slow", delay_s=0.5).start()
    cmd = [sys.executable, "-m", "medig", "audit", str(run["in"]), "--out", str(out), *TINY_ARGS,
           "--dicom-out", "--include-phi", "--send", server.destination]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
        log = out / "dicom" / SENT_LOG
        deadline = time.monotonic() + 600  # a loaded machine can take minutes to get there
        while time.monotonic() < deadline and proc.poll() is None:
            if log.is_file() and len(log.read_text().splitlines()) >= 2:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial = acks(out)
        assert 2 <= sum(partial.values()) < 14  # killed while sending
        server.delay_s = 0
        assert subprocess.run(cmd, cwd=ROOT, env=env).returncode == EXIT_OK
        objects = {str(pydicom.dcmread(p).SOPInstanceUID) for p in dicom_objects(out)}
        assert acks(out) == Counter(dict.fromkeys(objects, 1))  # exactly once each
        assert set(server.stored()) == objects  # filed once by SOP Instance UID
        assert len(list(server.folder.glob("*.dcm"))) == 14
        # what the first run had acknowledged was not sent again
        assert Counter(server.received) - Counter(dict.fromkeys(objects, 1)) <= Counter(
            {u: 1 for u in objects if u not in partial})
    finally:
        server.stop()


@pytest.mark.slow
def test_real_archive_files_each_object_once(run, tmp_path):
    """Orthanc when installed (REST checks); otherwise pynetdicom's storage SCP."""
    out = tmp_path / "copy"
    shutil.copytree(run["out"], out)
    if shutil.which("Orthanc") is None:
        archive = StorageSCP(tmp_path / "archive").start()

        def instances() -> dict[str, dict[str, str]]:
            return {u: {"PatientID": str(d.PatientID), "StudyInstanceUID": d.StudyInstanceUID}
                    for u, d in archive.stored().items()}
    else:
        archive = Orthanc(tmp_path / "orthanc").start()

        def instances() -> dict[str, dict[str, str]]:
            tags = [archive.get(f"/instances/{i}/simplified-tags")
                    for i in archive.get("/instances")]
            return {t["SOPInstanceUID"]: t for t in tags}
    try:
        args = ("--dicom-out", "--include-phi", "--send", archive.destination)
        assert audit(run["in"], out, *args) == EXIT_OK
        objects = {str(d.SOPInstanceUID): d for d in map(pydicom.dcmread, dicom_objects(out))}
        filed = instances()
        assert set(filed) == set(objects)
        for uid, tags in filed.items():
            assert tags["PatientID"] == objects[uid].PatientID
            assert tags["StudyInstanceUID"] == objects[uid].StudyInstanceUID
        assert audit(run["in"], out, *args) == EXIT_OK  # a re-run adds nothing
        assert instances() == filed
        (out / "dicom" / SENT_LOG).unlink()  # even sending everything again adds nothing:
        assert audit(run["in"], out, *args) == EXIT_OK  # same objects, same UIDs
        assert instances() == filed
    finally:
        archive.stop()


@pytest.mark.slow
def test_names_that_row_paths_escape_still_find_their_dicom(tmp_path):
    """Row paths percent-escape '%' and '#': the export and the study ids read the file itself."""
    make_studies(tmp_path / "in", n_studies=1)
    for k in (0, 1):
        (tmp_path / "in" / f"patient0_{k}.dcm").rename(tmp_path / "in" / f"100%#{k}.dcm")
    out = tmp_path / "out"
    assert audit(tmp_path / "in", out, "--dicom-out", "--include-phi") == EXIT_OK
    rows = {r["path"]: r for r in read_results(out / "results.jsonl")}
    a, b = rows["100%25%230.dcm"], rows["100%25%231.dcm"]
    assert a["study_source"] == b["study_source"] == "dicom" and a["study"] == b["study"]
    overlays = [p for p in dicom_objects(out) if p.parent.name == "overlays"]
    assert len(overlays) == 2  # one Secondary Capture per DICOM image
