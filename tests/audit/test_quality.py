# SPDX-License-Identifier: Apache-2.0
"""The image-quality gate in the audit: ``--quality flag`` (default), ``skip`` and ``off`` on a
mixed folder (fundus photographs, a scene, an over-exposed fundus, a white frame)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pypdf import PdfReader

from medig.audit import AuditSettings, read_results, run_audit
from medig.cli import EXIT_OK, EXIT_USAGE, main
from medig.preprocess import QUALITY_LEVELS
from medig.synthetic import generate
from medig.synthetic.degrade import over_expose
from tests.audit.conftest import TINY

BASE = ["--model", TINY, "--classes", "healthy", "referable", "--size", "96",
        "--batch-size", "3", "--workers", "0", "--quiet"]
NOT_GRADEABLE = {"scene.png": "not_fundus", "washed_out.png": "ungradeable",
                 "white.png": "ungradeable"}


def _save(t: torch.Tensor, path: Path) -> None:
    Image.fromarray(t.permute(1, 2, 0).numpy()).save(path)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    images, _, _ = generate(3, size=256, seed=21)
    _save(images[0], root / "fundus_a.png")
    _save(images[1], root / "fundus_b.png")
    _save(over_expose(images[2:3], 0.8)[0], root / "washed_out.png")
    _save(torch.full((3, 200, 260), 255, dtype=torch.uint8), root / "white.png")
    # A scene: a sharp, textured photograph of no retina (a checkerboard of coloured tiles with
    # noise), edge to edge.
    g = torch.Generator().manual_seed(0)
    tiles = torch.randint(0, 256, (3, 12, 16), generator=g, dtype=torch.uint8)
    scene = tiles.repeat_interleave(20, 1).repeat_interleave(20, 2).float()
    scene += 20 * torch.randn(scene.shape, generator=g)
    _save(scene.clamp(0, 255).byte(), root / "scene.png")
    return root


def _pdf_text(path: Path) -> str:
    return " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(path).pages)


@pytest.fixture(scope="module")
def flagged(mixed, tmp_path_factory):
    out = tmp_path_factory.mktemp("flag") / "out"
    return out, main(["audit", str(mixed), "--out", str(out), *BASE])


def test_flag_explains_every_image_and_carries_the_verdict(flagged):
    out, code = flagged
    assert code == EXIT_OK
    rows = {r["path"]: r for r in read_results(out / "results.jsonl")}
    assert set(rows) == {"fundus_a.png", "fundus_b.png", *NOT_GRADEABLE}
    for path, row in rows.items():
        assert row["status"] == "ok" and (out / row["overlay"]).is_file()
        assert row["quality"] == NOT_GRADEABLE.get(path, "gradeable"), (path, row)
        assert row["quality"] in QUALITY_LEVELS
        assert isinstance(row["quality_reasons"], list)
        assert bool(row["quality_reasons"]) == (row["quality"] != "gradeable")
        assert 0 < row["fov_fraction"] <= 1.0
    assert rows["white.png"]["fov_shape"] == "full_frame"
    assert rows["white.png"]["quality_reasons"][0].startswith("over-exposed")
    assert rows["scene.png"]["quality_reasons"][0].startswith("not a retinal image")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quality"] == {"mode": "flag", "gradeable": 2, "ungradeable": 2,
                                   "not_fundus": 1, "skipped": 0}
    assert manifest["settings"]["quality"] == "flag"
    csv = (out / "results.csv").read_text(encoding="utf-8").splitlines()
    header = csv[0].split(",")
    assert "quality" in header and "sharpness" in header
    assert "'" not in csv[1 + sorted(rows).index("scene.png")]  # reasons joined, not a repr


def test_flag_report_counts_and_lists_the_non_gradeable_images(flagged):
    out, _ = flagged
    text = _pdf_text(out / "report.pdf")
    assert "Image quality: 2 gradeable, 2 ungradeable, 1 not fundus photographs." in text
    section = text.split("Images that are not gradeable fundus photographs", 1)[1]
    section = section.split("How to read the overlays", 1)[0]
    for name in NOT_GRADEABLE:
        assert name in section
    assert "fundus_a.png" not in section
    assert "healthy (p =" in section or "referable (p =" in section  # what the model said
    assert "Image quality" in text.split("Images", 3)[-1]  # the per-image quality line


def test_skip_leaves_non_gradeable_images_unexplained_and_is_no_error(mixed, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["audit", str(mixed), "--out", str(out), *BASE, "--quality", "skip"]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "0 could not be read" in printed and "3 skipped" in printed
    rows = {r["path"]: r for r in read_results(out / "results.jsonl")}
    for path, verdict in NOT_GRADEABLE.items():
        row = rows[path]
        assert row["status"] == "skipped" and row["quality"] == verdict
        assert row["predicted"] is None and row["overlay"] is None and row["error"] is None
        assert not (out / "overlays" / f"{path}.png").exists()
    assert rows["fundus_a.png"]["status"] == "ok" and rows["fundus_a.png"]["overlay"]
    text = _pdf_text(out / "report.pdf")
    assert "5 images audited: 2 explained, 0 could not be read, 3 skipped as not gradeable." \
        in text
    assert "None: every input could be read." in text  # skipped is not "could not be read"
    assert "not explained (skipped)" in text
    # Resuming recomputes nothing and keeps one row per input.
    settings = AuditSettings(model=TINY, class_names=["healthy", "referable"], size=96,
                             batch_size=3, workers=0, quality="skip")
    again = run_audit([mixed], out, settings, progress=False)
    assert again.computed == 0 and again.errors == 0 and len(again.rows) == 5
    # Another gate setting changes what is computed: refused without --force.
    assert main(["audit", str(mixed), "--out", str(out), *BASE]) == EXIT_USAGE


def test_off_computes_no_verdict(mixed, tmp_path):
    out = tmp_path / "out"
    assert main(["audit", str(mixed), "--out", str(out), *BASE, "--quality", "off"]) == EXIT_OK
    rows = read_results(out / "results.jsonl")
    assert all(r["status"] == "ok" and r["quality"] is None and r["sharpness"] is None
               for r in rows)
    assert "quality" not in json.loads((out / "manifest.json").read_text())
    text = _pdf_text(out / "report.pdf")
    assert "Not checked: this audit ran with the image-quality gate off" in text
    assert "Image quality:" not in text


def test_full_frame_inputs_reach_the_model_whole(flagged):
    # The white frame is a full-frame field: the model input shows the whole frame (padded to a
    # square), not a disk cut out of it.
    out, _ = flagged
    png = np.asarray(Image.open(out / "overlays" / "white.png.png"))
    left = png[:, :96]  # the image as given to the model
    rows = (left.max(axis=(1, 2)) > 200).mean()
    assert abs(rows - 200 / 260) < 0.05 and (left[48] > 200).all()
