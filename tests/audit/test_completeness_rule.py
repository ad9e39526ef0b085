# SPDX-License-Identifier: Apache-2.0
"""The audit's completeness rule end to end: ``--completeness-atol``, the ``abs_tol`` column, the
manifest, the report's method note, and the resume key."""
from __future__ import annotations

import json

import pytest
from pypdf import PdfReader

from medig.audit import read_results
from medig.cli import EXIT_SOME_FILES_FAILED, EXIT_USAGE, main
from tests.audit.conftest import TINY

MAP_TOL = 0.05  # the audit's default
BASE = ["--model", TINY, "--classes", "healthy", "referable", "--size", "64",
        "--batch-size", "4", "--workers", "0", "--quiet", "--baseline", "black"]


@pytest.fixture(scope="module")
def default_audit(audit_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("rule") / "out"
    assert main(["audit", str(audit_folder), "--out", str(out), *BASE]) == EXIT_SOME_FILES_FAILED
    return out


def _ok_rows(out):
    return [r for r in read_results(out / "results.jsonl") if r["status"] == "ok"]


def _check_rule(rows, atol, tol=0.01, map_tol=MAP_TOL):
    for r in rows:
        allowed = max(atol, tol * abs(r["score"] - r["baseline_score"]))
        assert r["abs_tol"] == pytest.approx(allowed, rel=1e-5)
        within = abs(r["delta"]) <= r["abs_tol"] * (1 + 1e-5)
        accurate = (map_tol is None or r["map_error"] is None
                    or r["map_error"] <= map_tol * (1 + 1e-5))
        assert r["flagged"] is (not within or not accurate)
        reasons = [name for name, ok in (("completeness", within), ("map accuracy", accurate))
                   if not ok]
        assert r["flag_reason"] == (" and ".join(reasons) or None)
        assert r["relative_error"] == pytest.approx(
            abs(r["delta"]) / abs(r["score"] - r["baseline_score"]), rel=1e-4)


def test_probability_audit_applies_the_default_absolute_tolerance(default_audit):
    rows = _ok_rows(default_audit)
    assert rows
    _check_rule(rows, 1e-3)
    manifest = json.loads((default_audit / "manifest.json").read_text())
    assert manifest["settings"]["completeness_atol"] == 1e-3
    assert "max(0.001, 0.01 * |F(x) - F(x')|)" in manifest["completeness_rule"]
    assert "probability" in manifest["completeness_rule"]
    header = (default_audit / "results.csv").read_text(encoding="utf-8").splitlines()[0]
    assert "abs_tol" in header.split(",")


def test_report_states_the_rule_in_the_method_note(default_audit):
    text = " ".join(page.extract_text() for page in PdfReader(default_audit / "report.pdf").pages)
    text = " ".join(text.split())
    assert "Completeness rule: an image's attribution counts as complete when its completeness" in text
    assert "larger of 0.001 (in probability) and 1.00% of the change" in text
    assert "allowed ±" in text  # per image: the gap beside the tolerance it was allowed


@pytest.mark.slow
def test_given_absolute_tolerance_and_logit_default(audit_folder, tmp_path):
    loose = tmp_path / "loose"
    # completeness alone (--map-tol none): the evaluation counts compare the two completeness rules
    main(["audit", str(audit_folder), "--out", str(loose), *BASE, "--completeness-atol", "0.05",
          "--map-tol", "none"])
    rows = _ok_rows(loose)
    _check_rule(rows, 0.05, map_tol=None)
    logit = tmp_path / "logit"
    main(["audit", str(audit_folder), "--out", str(logit), *BASE, "--output", "logit",
          "--map-tol", "none"])
    manifest = json.loads((logit / "manifest.json").read_text())
    assert manifest["settings"]["completeness_atol"] == 1e-6  # float noise only, in logit units
    _check_rule(_ok_rows(logit), 1e-6, map_tol=None)
    # a looser rule costs fewer evaluations than the strict logit one on the same images
    assert sum(r["n_steps"] for r in rows) <= sum(r["n_steps"] for r in _ok_rows(logit))


def test_changed_absolute_tolerance_is_refused_on_resume(default_audit, audit_folder, capsys):
    code = main(["audit", str(audit_folder), "--out", str(default_audit), *BASE,
                 "--completeness-atol", "0.01"])
    assert code == EXIT_USAGE
    assert "completeness_atol" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["-0.1", "nan", "inf"])
def test_bad_absolute_tolerance_is_a_usage_error(audit_folder, tmp_path, capsys, bad):
    code = main(["audit", str(audit_folder), "--out", str(tmp_path / "x"), *BASE,
                 "--completeness-atol", bad])
    assert code == EXIT_USAGE
    assert "--completeness-atol" in capsys.readouterr().err


def test_map_accuracy_rule_in_rows_manifest_and_report(default_audit):
    rows = _ok_rows(default_audit)
    assert all(isinstance(r["map_error"], float) for r in rows)  # every image has an estimate
    header = (default_audit / "results.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header.index("map_error") == header.index("relative_error") + 1
    assert header.index("flag_reason") == header.index("flagged") + 1
    manifest = json.loads((default_audit / "manifest.json").read_text())
    assert manifest["settings"]["map_tol"] == MAP_TOL
    assert "<= 0.05" in manifest["map_rule"] and "map_error" in manifest["map_rule"]
    text = " ".join(page.extract_text() for page in PdfReader(default_audit / "report.pdf").pages)
    text = " ".join(text.split())
    assert "Map accuracy rule:" in text and "at most 5% of the map" in text
    assert "(estimated)" in text


def test_map_tol_is_a_numeric_setting(default_audit, audit_folder, capsys, tmp_path):
    code = main(["audit", str(audit_folder), "--out", str(default_audit), *BASE,
                 "--map-tol", "0.1"])
    assert code == EXIT_USAGE
    assert "map_tol" in capsys.readouterr().err
    alone = tmp_path / "alone"
    main(["audit", str(audit_folder), "--out", str(alone), *BASE, "--map-tol", "none"])
    manifest = json.loads((alone / "manifest.json").read_text())
    assert manifest["settings"]["map_tol"] is None
    assert manifest["map_rule"].startswith("Completeness alone")
    assert not any(r["flag_reason"] == "map accuracy" for r in _ok_rows(alone))
    # completeness alone costs no more than completeness and map accuracy on the same images
    assert (sum(r["n_steps"] for r in _ok_rows(alone))
            <= sum(r["n_steps"] for r in _ok_rows(default_audit)))
