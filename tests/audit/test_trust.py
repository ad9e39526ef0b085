# SPDX-License-Identifier: Apache-2.0
"""The trust checks inside ``medig audit``: per-image columns, flags, the sanity check as an audit
step (resumable), the manifest and the report."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from pypdf import PdfReader

from medig.audit import read_results
from medig.checks import deletion_curve, thresholds, trust_flags
from medig.checks.deletion import faithfulness_output
from medig.cli import EXIT_SOME_FILES_FAILED, EXIT_USAGE, main
from medig.io import read_image
from medig.preprocess import FundusPreprocess
from tests.audit.conftest import TINY
from tests.audit.tiny_models import make_tiny

BASE = ["--model", TINY, "--classes", "healthy", "referable", "--size", "96",
        "--batch-size", "3", "--workers", "0", "--quiet"]
CHECKS = ("baseline_agreement", "baseline_topk_overlap", "faithfulness", "deletion_auc",
          "random_deletion_auc")


@pytest.fixture(scope="module")
def audited(audit_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("trust") / "out"
    code = main(["audit", str(audit_folder), "--out", str(out), *BASE, "--cross-check",
                 "occlusion", "--save-attributions"])
    return out, code


def test_rows_carry_the_checks_and_their_flags(audited) -> None:
    out, code = audited
    assert code == EXIT_SOME_FILES_FAILED
    ok = [r for r in read_results(out / "results.jsonl") if r["status"] == "ok"]
    assert len(ok) == 6
    for row in ok:
        assert all(isinstance(row[k], float) for k in (*CHECKS, "occlusion_agreement"))
        assert -1 <= row["baseline_agreement"] <= 1 and -1 <= row["faithfulness"] <= 1
        assert row["trust_flags"] == trust_flags(row["flagged"], row["baseline_agreement"],
                                                 row["faithfulness"])
    with open(out / "results.csv", encoding="utf-8", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert all(k in table[0] for k in (*CHECKS, "occlusion_agreement"))
    by_path = {r["path"]: r for r in ok}
    for line in table:  # a list is one cell of JSON text, as spreadsheets and scripts read it
        if line["path"] in by_path:
            assert json.loads(line["trust_flags"]) == by_path[line["path"]]["trust_flags"]


def test_faithfulness_recomputed_from_the_file_and_saved_attributions(audited,
                                                                      audit_folder) -> None:
    out, _ = audited
    row = next(r for r in read_results(out / "results.jsonl") if r["path"] == "b.png")
    image = read_image(audit_folder / "b.png").pixels
    x, fov = FundusPreprocess(size=96)([image])
    saved = np.load(out / "attributions" / "b.png.npz")
    attributions = torch.from_numpy(saved["attributions"])[None]
    model = make_tiny()
    result = deletion_curve(faithfulness_output(model, "probability"), x, attributions,
                            row["target_index"], fov)
    assert result.faithfulness.item() == pytest.approx(row["faithfulness"], abs=1e-4)
    assert result.auc.item() == pytest.approx(row["deletion_auc"], rel=1e-4, abs=1e-4)


def test_manifest_has_the_thresholds_and_the_sanity_check(audited) -> None:
    out, _ = audited
    trust = json.loads((out / "manifest.json").read_text())["trust_checks"]
    assert trust["thresholds"] == thresholds.as_dict()
    assert trust["deletion"]["steps"] == 10 and trust["deletion"]["fill"] == "blur"
    sanity = trust["sanity_check"]
    assert sanity["status"] in ("passed", "failed")
    assert len(sanity["images"]) == 6  # every explained image: fewer than the default 8
    assert len(sanity["stages"]) == len(sanity["similarity"]) == len(sanity["ssim"]) >= 2
    assert sanity["stages"][0] == "7"  # the tiny model's head (its last parameterised child)
    assert np.array(sanity["per_image_similarity"]).shape == (len(sanity["stages"]), 6)
    assert (sanity["status"] == "passed") == (sanity["similarity"][-1] < sanity["threshold"])


def test_report_answers_whether_to_trust_the_maps(audited) -> None:
    out, _ = audited
    reader = PdfReader(out / "report.pdf")
    first = reader.pages[0].extract_text()
    assert "Can the attributions be trusted?" in first
    for words in ("Completeness", "Baseline agreement", "Faithfulness", "Sanity check"):
        assert words in first
    text = " ".join(" ".join(p.extract_text() for p in reader.pages).split())
    assert "random removal" in text and "Occlusion agreement" in text


def test_resumed_audit_reuses_the_sanity_check(audited, audit_folder, monkeypatch) -> None:
    out, _ = audited
    before = json.loads((out / "manifest.json").read_text())["trust_checks"]["sanity_check"]

    def fail(*_args, **_kwargs):
        raise AssertionError("the sanity check was recomputed")

    monkeypatch.setattr("medig.audit.steps.sanity.randomisation_test", fail)
    code = main(["audit", str(audit_folder), "--out", str(out), *BASE, "--cross-check",
                 "occlusion", "--save-attributions"])
    assert code == EXIT_SOME_FILES_FAILED
    after = json.loads((out / "manifest.json").read_text())["trust_checks"]["sanity_check"]
    assert after == before


def test_switches_and_refusals(audit_folder, tmp_path, capsys) -> None:
    assert main(["audit", str(audit_folder), "--out", str(tmp_path / "bad"), *BASE,
                 "--sanity-sample", "-1"]) == EXIT_USAGE
    assert "--sanity-sample" in capsys.readouterr().err
    out = tmp_path / "off"
    main(["audit", str(audit_folder), "--out", str(out), *BASE, "--no-trust-checks",
          "--sanity-sample", "0"])
    ok = [r for r in read_results(out / "results.jsonl") if r["status"] == "ok"]
    assert all(r[k] is None for r in ok for k in CHECKS)
    assert all(r["trust_flags"] == (["incomplete"] if r["flagged"] else []) for r in ok)
    sanity = json.loads((out / "manifest.json").read_text())["trust_checks"]["sanity_check"]
    assert sanity["status"] == "disabled"
    assert "NOT RUN" in PdfReader(out / "report.pdf").pages[0].extract_text()
    # Switching the checks back on changes the results' columns: refused without --force.
    assert main(["audit", str(audit_folder), "--out", str(out), *BASE]) == EXIT_USAGE
    assert "trust_checks" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, still met
def test_torchscript_model_gets_not_run_with_the_reason(audit_folder, tmp_path) -> None:
    path = tmp_path / "tiny.ts"
    torch.jit.save(torch.jit.trace(make_tiny(), torch.rand(1, 3, 96, 96)), str(path))
    out = tmp_path / "ts"
    main(["audit", str(audit_folder), "--out", str(out), "--model", str(path), "--classes",
          "healthy", "referable", "--size", "96", "--workers", "0", "--quiet",
          "--no-trust-checks", "--sanity-sample", "2"])
    sanity = json.loads((out / "manifest.json").read_text())["trust_checks"]["sanity_check"]
    assert sanity["status"] == "not run" and "TorchScript" in sanity["reason"]
