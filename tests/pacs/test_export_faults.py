# SPDX-License-Identifier: Apache-2.0
"""Faults during the DICOM export: one source that cannot be built costs only its own objects
(the others are written and sent), and a full disk is one plain line."""
from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from medig.audit import read_results
from medig.cli import EXIT_NOT_SENT, main
from medig.pacs import export
from medig.pacs.export import dicom_objects
from tests.io.conftest import PHI
from tests.pacs.conftest import TINY_ARGS, StorageSCP, fill_disk, make_studies

BAD_PATIENT = f"{PHI['PatientID']}-1"  # the patient of patient1_*.dcm (make_studies)


def audit(inputs: Path, out: Path, *extra: str) -> int:
    return main(["audit", str(inputs), "--out", str(out), *TINY_ARGS, "--dicom-out",
                 "--include-phi", *extra])


@pytest.fixture
def refusing_one_patient(monkeypatch):
    """highdicom (or pydicom) refuses the header of one patient's images, quoting a value."""
    real = export.overlay_capture

    def overlay_capture(source, *args, **kwargs):
        if source.dataset.PatientID == BAD_PATIENT:
            raise ValueError(f"{PHI['PatientName']!r} is not a valid PersonName")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(export, "overlay_capture", overlay_capture)


@pytest.mark.slow
def test_a_refused_source_costs_only_its_own_objects_and_the_rest_is_sent(
        tmp_path, refusing_one_patient, caplog, capsys):
    make_studies(tmp_path / "in", n_studies=3)
    server = StorageSCP(tmp_path / "archive").start()
    out = tmp_path / "out"
    try:
        code = audit(tmp_path / "in", out, "--send", server.destination)
        stored = server.stored()
    finally:
        server.stop()
    assert code == EXIT_NOT_SENT
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("no DICOM")]
    assert lines == [f"no DICOM objects for patient1_{k}.dcm: its header was refused "
                     "(ValueError)" for k in (0, 1)]
    err = capsys.readouterr().err
    assert "2 source(s) or study page(s) got no DICOM objects" in err and "sent to" in err
    assert PHI["PatientName"] not in err + "\n".join(lines)  # the library's message is not shown
    rows = {r["path"]: r for r in read_results(out / "results.jsonl")}
    made = sorted(p.relative_to(out / "dicom").as_posix() for p in dicom_objects(out))
    good = [f"patient{s}_{k}.dcm" for s in (0, 2) for k in (0, 1)]
    assert made == sorted([f"{kind}/{n}.dcm" for n in good for kind in ("overlays", "sr", "maps")]
                          + [f"studies/{rows[f'patient{s}_0.dcm']['study']}.dcm" for s in (0, 2)])
    assert set(stored) == {str(pydicom.dcmread(p).SOPInstanceUID) for p in dicom_objects(out)}
    assert BAD_PATIENT not in {str(ds.PatientID) for ds in stored.values()}


@pytest.mark.slow
def test_a_source_that_fails_later_keeps_its_earlier_objects(tmp_path, monkeypatch, caplog):
    """Nothing already written is lost: the objects of a source that now fails stay on disk."""
    make_studies(tmp_path / "in", n_studies=2)
    out = tmp_path / "out"
    assert audit(tmp_path / "in", out) == 0
    before = {p: p.read_bytes() for p in dicom_objects(out)}
    real = export.overlay_capture

    def overlay_capture(source, *args, **kwargs):
        if source.dataset.PatientID == BAD_PATIENT:
            raise ValueError("refused")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(export, "overlay_capture", overlay_capture)
    assert audit(tmp_path / "in", out) == EXIT_NOT_SENT
    assert {p: p.read_bytes() for p in dicom_objects(out)} == before


def test_a_full_disk_is_one_plain_line(tmp_path, monkeypatch, capsys):
    make_studies(tmp_path / "in", n_studies=1)
    out = tmp_path / "out"
    (out / "dicom").mkdir(parents=True)
    fill_disk(monkeypatch, out / "dicom")
    code = audit(tmp_path / "in", out)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_NOT_SENT
    assert len(err) == 1, err
    assert err[0].startswith("medig: error: cannot write dicom/overlays/patient0_0.dcm.dcm: No "
                             "space left on device;"), err[0]
    assert "Traceback" not in err[0] and "File " not in err[0] and "With tag" not in err[0]
    assert (out / "results.jsonl").is_file() and (out / "report.pdf").is_file()
    assert dicom_objects(out) == []
    assert not [p for p in (out / "dicom").rglob("*") if p.is_file()]  # no temporary left


def test_stored_work_without_the_crop_box_costs_only_the_map(tmp_path, caplog):
    """Work stored by an older medig (no crop box): each image gets its overlay and report, one
    line says why it has no map, and its map of an earlier run stays."""
    import numpy as np

    make_studies(tmp_path / "in", n_studies=1)
    out = tmp_path / "out"
    assert audit(tmp_path / "in", out) == 0
    maps = {p: p.read_bytes() for p in (out / "dicom" / "maps").iterdir()}
    for arrays in (out / ".medig" / "arrays").iterdir():
        with np.load(arrays) as data:
            kept = {k: data[k] for k in data.files if k not in ("box", "source_shape")}
        np.savez_compressed(arrays, **kept)
    caplog.clear()
    assert audit(tmp_path / "in", out) == EXIT_NOT_SENT
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("no DICOM")]
    assert len(lines) == 2 and all(line.startswith("no DICOM evidence map for patient0_")
                                   and "re-audit with --force" in line for line in lines)
    assert {p: p.read_bytes() for p in (out / "dicom" / "maps").iterdir()} == maps
    made = {p.relative_to(out / "dicom").parts[0] for p in dicom_objects(out)}
    assert made == {"overlays", "sr", "maps", "studies"}
