# SPDX-License-Identifier: Apache-2.0
"""One hostile file never stops, hangs or corrupts an audit (the findings of a fuzzing campaign).

One audit runs over the hand-made cases of :mod:`tests.fuzz.cases` (in a thread, so a reader that
blocks on a FIFO fails the test instead of hanging it); smaller audits check resume, changed and
vanishing files.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

import medig.audit.pipeline as pipeline
from medig.audit import AuditSettings, read_results, run_audit
from medig.audit.store import parse_row_path, record_key
from tests.audit.conftest import TINY
from tests.fuzz.cases import make_edge_cases
from tests.io.conftest import rgb_fundus

CLASSES = ["healthy", "referable"]


def _loader(settings):
    from medig.models import load_model

    return load_model(TINY, class_names=CLASSES)


def _settings(**kw) -> AuditSettings:
    base = dict(size=64, batch_size=4, workers=0, baselines=["black"], class_names=CLASSES)
    return AuditSettings(**{**base, **kw})


def _audit(folder, out, timeout: float = 300, **kw):
    """run_audit in a daemon thread: a hang becomes a test failure, not a stuck test run."""
    box: dict = {}

    def work():
        try:
            box["summary"] = run_audit([folder], out, _settings(**kw), progress=False,
                                       model_loader=_loader)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test
            box["error"] = error

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the audit hung"
    if "error" in box:
        raise box["error"]
    return box["summary"]


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edge") / "in"
    cases = make_edge_cases(folder)
    out = folder.parent / "out"
    stale = out / ".report.pdf.k2j4_8xq.tmp"  # left by a run killed while writing the report
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    summary = _audit(folder, out, workers=2)
    rows = read_results(out / "results.jsonl")
    return folder, out, cases, summary, rows


def test_every_case_gets_its_row(edge):
    _folder, _out, cases, summary, rows = edge
    by_path: dict[str, list] = {}
    for row in rows:
        name = row["path"]
        stem, _, frame = name.rpartition("#") if "#" in name else (name, "", "")
        by_path.setdefault(stem if frame.isdigit() else name, []).append(row)
    assert set(by_path) == set(cases)
    for path, expected in cases.items():
        got = by_path[path]
        assert len(got) == expected.frames, path
        for row in got:
            assert row["status"] == expected.status, (path, row["error"])
            assert expected.reason in (row["error"] or "").lower(), (path, row["error"])
    assert summary.errors == sum(e.status == "error" for e in cases.values())


def test_outputs_are_distinct_and_within_name_limits(edge):
    _folder, out, _cases, _summary, rows = edge
    overlays = [r["overlay"] for r in rows if r["status"] == "ok"]
    assert len(set(overlays)) == len(overlays)  # a<b, a>b, a_b; NFC/NFD; eye.dcm#1 vs frame 1
    for overlay in overlays:
        assert (out / overlay).is_file()
        assert all(len(part.encode()) <= 255 for part in Path(overlay).parts)
    assert len({r["path"] for r in rows}) == len(rows)


def test_non_utf8_name_round_trips_through_every_output(edge):
    folder, out, _cases, _summary, rows = edge
    row = next(r for r in rows if r["path"] == "caf%FF.jpg")
    assert row["status"] == "ok"
    rel, frame = parse_row_path(row["path"])
    assert frame is None and (folder / rel).is_file()
    assert os.fsencode(rel) == b"caf\xff.jpg"
    csv_text = (out / "results.csv").read_text(encoding="utf-8")
    assert "\ncaf%FF.jpg," in csv_text
    report = "\n".join(p.extract_text() for p in PdfReader(out / "report.pdf").pages)
    assert "caf%FF.jpg" in report and "eye.dcm%231" in report


def test_every_row_maps_back_to_its_file(edge):
    folder, _out, _cases, _summary, rows = edge
    for row in rows:
        rel, _frame = parse_row_path(row["path"].rstrip("/"))
        assert os.path.lexists(folder / rel), row["path"]


def test_stale_temporaries_of_a_killed_run_are_removed(edge):
    _folder, out, *_ = edge
    assert not list(out.rglob("*.tmp"))


def test_resume_recomputes_only_what_is_not_about_the_content(edge):
    folder, out, cases, _summary, _rows = edge
    again = _audit(folder, out, workers=2)
    # Thin images, bombs and corrupt files are final (their bytes will not change by waiting);
    # the FIFO, the device, the broken link, the loop and the folder are retried.
    assert again.computed == sum(p in ("pipe.jpg", "zero.dcm", "gone.jpg", "loop.jpg",
                                       "folder.jpg/") for p in cases)


def _one_image(folder: Path, name: str = "a.png", seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(rgb_fundus(64, 64, seed=seed)).save(path)
    return path


def test_file_replaced_between_hashing_and_decoding(tmp_path, monkeypatch):
    path = _one_image(tmp_path / "in")
    first = hashlib.sha256(path.read_bytes()).hexdigest()
    real = pipeline._hash_items

    def hash_then_replace(items):
        shas = real(items)
        Image.fromarray(rgb_fundus(64, 64, seed=9)).save(path)  # replaced before decoding
        return shas

    monkeypatch.setattr(pipeline, "_hash_items", hash_then_replace)
    out = tmp_path / "out"
    (row,) = _audit(tmp_path / "in", out).rows
    second = hashlib.sha256(path.read_bytes()).hexdigest()
    assert first != second and row["sha256"] == second  # the bytes that were decoded
    # The settings' key as the audit resolved them (the model fills in mean/std and the target).
    settings_key = json.loads((out / "manifest.json").read_text())["settings_key"]
    assert (out / ".medig" / "records" / f"{record_key(second, settings_key)}.json").is_file()
    assert not (out / ".medig" / "records" / f"{record_key(first, settings_key)}.json").exists()
    monkeypatch.undo()
    assert _audit(tmp_path / "in", out).computed == 0  # found again under the right hash


def test_transient_missing_file_is_retried(tmp_path, monkeypatch):
    path = _one_image(tmp_path / "in")
    content = path.read_bytes()
    real = pipeline._hash_items

    def hash_then_vanish(items):
        shas = real(items)
        path.unlink()  # moved away for a moment (a sync tool, a network share)
        return shas

    monkeypatch.setattr(pipeline, "_hash_items", hash_then_vanish)
    out = tmp_path / "out"
    (row,) = _audit(tmp_path / "in", out).rows
    assert row["status"] == "error" and row["error"] == "no such file"
    monkeypatch.undo()
    path.write_bytes(content)  # back, unchanged
    summary = _audit(tmp_path / "in", out)
    assert summary.computed == 1 and summary.rows[0]["status"] == "ok"


def test_transient_error_also_retried_under_force(tmp_path, monkeypatch):
    path = _one_image(tmp_path / "in")
    content = path.read_bytes()
    real = pipeline._hash_items

    def hash_then_vanish(items):
        shas = real(items)
        path.unlink()
        return shas

    monkeypatch.setattr(pipeline, "_hash_items", hash_then_vanish)
    out = tmp_path / "out"
    _audit(tmp_path / "in", out)
    monkeypatch.undo()
    path.write_bytes(content)
    summary = run_audit([tmp_path / "in"], out, _settings(), force=True, progress=False,
                        model_loader=_loader)  # same settings: --force alone used to keep it
    assert summary.computed == 1 and summary.rows[0]["status"] == "ok"


def test_thin_image_is_a_final_error_not_an_internal_one(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rgb_fundus(64, 64)).save(folder / "ok.png")
    import numpy as np

    Image.fromarray(np.full((3, 5000, 3), 120, np.uint8)).save(folder / "thin.png")
    out = tmp_path / "out"
    first = _audit(folder, out)
    row = next(r for r in first.rows if r["path"] == "thin.png")
    assert row["status"] == "error" and "too small" in row["error"]
    assert "amax" not in row["error"]
    assert _audit(folder, out).computed == 0  # final: not recomputed on every run


def test_unreadable_subfolder_gets_an_error_row(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    _one_image(folder)
    (folder / "locked").mkdir()
    _one_image(folder / "locked", "hidden.png")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    summary = _audit(folder, tmp_path / "out")
    rows = {r["path"]: r for r in summary.rows}
    assert rows["locked/"]["status"] == "error" and "permission" in rows["locked/"]["error"]
    assert rows["a.png"]["status"] == "ok" and summary.errors == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["error"] == 1
