# SPDX-License-Identifier: Apache-2.0
"""End-to-end runs of the ``medig`` command on a small generated folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pypdf import PdfReader

from medig.audit import RESULT_FIELDS, read_results
from medig.cli import EXIT_FAILED, EXIT_OK, EXIT_SOME_FILES_FAILED, EXIT_USAGE, main
from tests.audit.conftest import TINY, make_audit_folder

ROOT = Path(__file__).resolve().parents[2]
BASE = ["--model", TINY, "--classes", "healthy", "referable", "--size", "96",
        "--batch-size", "3", "--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def audited(audit_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "out"
    code = main(["audit", str(audit_folder), "--out", str(out), *BASE])
    return out, code


def numbers(rows):
    keys = ("path", "sha256", "status", "predicted", "probabilities", "score", "baseline_score",
            "delta", "relative_error", "n_steps", "flagged", "pointing_hit",
            "mask_mass_fraction")
    return sorted((tuple(json.dumps(r[k]) for k in keys) for r in rows))


def test_results_hold_one_row_per_input(audited):
    out, code = audited
    assert code == EXIT_SOME_FILES_FAILED
    rows = read_results(out / "results.jsonl")
    by_path = {r["path"]: r for r in rows}
    assert set(by_path) == {"a.jpg", "b.png", "c.tif", "nested/deeper/d.png", "ösz fundus é.png",
                            "e.dcm", "nested/corrupt.jpg", "empty.png"}
    assert all(list(r) == list(RESULT_FIELDS) for r in rows)
    assert by_path["empty.png"]["status"] == "error" and "empty" in by_path["empty.png"]["error"]
    assert by_path["nested/corrupt.jpg"]["status"] == "error"
    for row in rows:
        if row["status"] != "ok":
            continue
        assert row["predicted"] in ("healthy", "referable")
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-5
        # the completeness rule: |delta| <= abs_tol = max(atol, 1% of |F(x) - F(x')|), else flagged
        allowed = max(1e-3, 0.01 * abs(row["score"] - row["baseline_score"]))
        assert abs(row["abs_tol"] - allowed) <= 1e-5 * allowed
        assert (abs(row["delta"]) <= row["abs_tol"] * (1 + 1e-5)) != row["flagged"]
        # completeness figures are consistent with each other
        gap = row["score"] - row["baseline_score"]
        assert abs(row["relative_error"] - abs(row["delta"]) / abs(gap)) < 1e-4
        assert (out / row["overlay"]).is_file()
        assert row["pointing_hit"] is None or isinstance(row["pointing_hit"], bool)
    assert by_path["e.dcm"]["laterality"] == "R"
    # lesion masks from masks/ give localisation figures where the image has lesions
    assert any(r["mask_mass_fraction"] is not None for r in rows)
    header = (out / "results.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("path,sha256,status,error,predicted")
    assert "p(referable)" in header


def test_overlays_show_original_beside_overlay(audited):
    out, _ = audited
    png = np.asarray(Image.open(out / "overlays" / "a.jpg.png"))
    assert png.shape[0] == 96 and png.shape[1] > 2 * 96


def test_manifest_is_complete(audited):
    out, _ = audited
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete"
    assert m["counts"] == {"total": 8, "ok": 6, "error": 2, "flagged": m["counts"]["flagged"]}
    assert m["settings"]["baselines"] == ["black", "blur"]
    assert set(m["versions"]) >= {"medig", "torch", "captum", "monai"}
    assert m["model"]["class_names"] == ["healthy", "referable"]
    assert m["cohort_clip"] > 0


def test_pdf_report_text(audited):
    out, _ = audited
    reader = PdfReader(out / "report.pdf")
    text = "\n".join(page.extract_text() for page in reader.pages)
    for name in ("a.jpg", "e.dcm", "corrupt.jpg", "empty.png", "referable"):
        assert name in text
    assert "Page 1 of" in text


def test_no_patient_identifier_in_any_output(audited, phi_strings):
    out, _ = audited
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for value in phi_strings:
                assert value.encode() not in data, f"{value!r} found in {path}"


def test_resume_skips_finished_work(audited, audit_folder):
    out, _ = audited
    before = (out / "results.jsonl").read_bytes()
    records = sorted((out / ".medig" / "records").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in records]
    code = main(["audit", str(audit_folder), "--out", str(out), *BASE])
    assert code == EXIT_SOME_FILES_FAILED
    assert (out / "results.jsonl").read_bytes() == before
    assert [p.stat().st_mtime_ns for p in records] == mtimes  # nothing recomputed


def test_changed_settings_are_refused(audited, audit_folder, capsys):
    out, _ = audited
    code = main(["audit", str(audit_folder), "--out", str(out), *BASE, "--baseline", "black"])
    assert code == EXIT_USAGE
    assert "changed: baselines" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["settings"]["baselines"] == [
        "black", "blur"]  # refused before anything was touched


@pytest.mark.slow
def test_force_reaudits_with_new_settings(audit_folder, tmp_path):
    out = tmp_path / "out"
    assert main(["audit", str(audit_folder), "--out", str(out), *BASE]) == EXIT_SOME_FILES_FAILED
    old = {r["path"]: r for r in read_results(out / "results.jsonl")}
    code = main(["audit", str(audit_folder), "--out", str(out), *BASE, "--baseline", "black",
                 "--force"])
    assert code == EXIT_SOME_FILES_FAILED
    new = {r["path"]: r for r in read_results(out / "results.jsonl")}
    assert set(new) == set(old)
    assert new["a.jpg"]["baseline_score"] != old["a.jpg"]["baseline_score"]
    assert json.loads((out / "manifest.json").read_text())["settings"]["baselines"] == ["black"]
    assert len(list((out / ".medig" / "records").iterdir())) == 8  # only the new settings' work


def test_report_rebuilds_without_model(audited):
    out, _ = audited
    (out / "report.pdf").unlink()
    assert main(["report", str(out)]) == EXIT_OK
    assert PdfReader(out / "report.pdf").pages


def test_usage_and_failure_exit_codes(tmp_path, capsys):
    assert main(["audit", str(tmp_path), "--out", str(tmp_path / "o"), *BASE,
                 "--baseline", "nope"]) == EXIT_USAGE
    assert main(["audit", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                 *BASE]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "unknown baseline 'nope'" in err and "missing" in err
    assert main(["report", str(tmp_path)]) == EXIT_USAGE


def test_attribution_sign_gives_green_left_red_right(tmp_path):
    img = np.zeros((120, 120, 3), np.uint8)
    yy, xx = np.mgrid[:120, :120]
    img[(yy - 60) ** 2 + (xx - 60) ** 2 <= 50 ** 2] = (200, 120, 60)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(img).save(folder / "disk.png")
    out = tmp_path / "out"
    code = main(["audit", str(folder), "--out", str(out), "--model",
                 "tests.audit.tiny_models:make_left_minus_right", "--classes", "x", "y",
                 "--target", "y", "--output", "logit", "--baseline", "black", "--size", "64",
                 "--workers", "0", "--quiet", "--overlay-scale", "image"])
    assert code == EXIT_OK
    png = np.asarray(Image.open(out / "overlays" / "disk.png.png")).astype(int)
    panel = png[:, -64:]  # the overlay is the right-hand panel
    left, right = panel[20:44, 12:28], panel[20:44, 36:52]
    assert (left[..., 1] - left[..., 0]).mean() > 60  # green where attribution is positive
    assert (right[..., 0] - right[..., 1]).mean() > 60  # red where it is negative


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_results(tmp_path):
    folder = make_audit_folder(tmp_path / "in", n=5, seed=5)
    args = ["--model", "tests.audit.tiny_models:make_slow", "--classes", "healthy", "referable",
            "--size", "64", "--batch-size", "1", "--workers", "0", "--quiet"]
    ref = tmp_path / "ref"
    assert main(["audit", str(folder), "--out", str(ref), *args]) == EXIT_SOME_FILES_FAILED
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "medig", "audit", str(folder), "--out", str(out), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    records = out / ".medig" / "records"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if records.is_dir() and len(list(records.glob("*.json"))) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.jsonl").exists()  # killed before the end
    code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    assert code == EXIT_SOME_FILES_FAILED
    rows = read_results(out / "results.jsonl")
    assert len(rows) == len({r["path"] for r in rows}) == 7
    assert numbers(rows) == numbers(read_results(ref / "results.jsonl"))
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_jpeg_decoded_on_the_device_path_agrees(audit_folder, tmp_path):
    # The nvJPEG path (undecoded bytes to the main process, one batched decode) exercised on the
    # CPU decoder: same inputs audited, same predictions, scores within JPEG-decoder tolerance.
    from medig.audit import AuditSettings, run_audit
    from medig.models import load_model

    def loader(settings):
        return load_model(TINY, class_names=["healthy", "referable"])

    runs = {}
    for flag in (False, True):
        settings = AuditSettings(size=96, batch_size=3, workers=0, jpeg_on_device=flag,
                                 class_names=["healthy", "referable"])
        out = tmp_path / str(flag)
        run_audit([audit_folder], out, settings, progress=False, model_loader=loader)
        runs[flag] = {r["path"]: r for r in read_results(out / "results.jsonl")}
    assert runs[True].keys() == runs[False].keys()
    for path, row in runs[False].items():
        other = runs[True][path]
        assert other["status"] == row["status"]
        if row["status"] == "ok":
            assert other["predicted"] == row["predicted"]
            assert abs(other["score"] - row["score"]) < 0.02


def test_explain_failure_is_reported_then_retried(tmp_path):
    # A model that fails on every input: each file gets an error row (exit 3), and the failure is
    # not stored as final work, so the next run tries again instead of resuming the error.
    from medig.audit import AuditSettings, run_audit
    from medig.models import LoadedModel

    folder = make_audit_folder(tmp_path / "in", n=2, seed=3)

    class Exploding(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("model exploded")

    def broken(settings):
        return LoadedModel(Exploding(), ["healthy", "referable"], input_size=64)

    settings = AuditSettings(size=64, batch_size=2, workers=0)
    summary = run_audit([folder], tmp_path / "out", settings, progress=False, model_loader=broken)
    rows = {r["path"]: r for r in summary.rows}
    assert rows["a.jpg"]["status"] == "error" and "model exploded" in rows["a.jpg"]["error"]
    assert summary.computed == 4  # 2 images + 2 bad files
    # The same settings object runs again: the audit never changes it.
    again = run_audit([folder], tmp_path / "out", settings, progress=False, model_loader=broken)
    assert again.computed == 2  # the two images are retried, the two bad files are final
