# SPDX-License-Identifier: Apache-2.0
"""Known answer: the corner-stamp model (``--model demo-shortcut``) reads only a stamp outside the
retina. Its audit must show that evidence on the overlays and flag the stamped rows
"evidence-outside-retina"; the demo model on the same images must not be flagged."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medig.audit import read_results
from medig.cli import main
from medig.synthetic import generate
from medig.synthetic.fundus import geometry
from medig.synthetic.shortcuts import STAMP_BOX, corner_stamp, stamp_box

FRAME, N = 128, 6
COMMON = ["--no-trust-checks", "--sanity-sample", "0", "--workers", "0", "--quiet",
          "--threads", "1"]


@pytest.fixture(scope="module")
def stamped_folder(tmp_path_factory) -> tuple[Path, dict[str, bool]]:
    root = tmp_path_factory.mktemp("stamped")
    raw, _, _ = generate(N, size=FRAME, seed=606)
    geo = geometry(N, size=FRAME, seed=606)
    on = torch.arange(N) % 2 == 0
    raw = corner_stamp(raw, stamp_box(geo["cx"], geo["cy"], geo["r"]), on)
    truth = {}
    for i in range(N):
        name = f"img{i}.png"
        Image.fromarray(raw[i].permute(1, 2, 0).numpy()).save(root / name)
        truth[name] = bool(on[i])
    return root, truth


def _audit(folder: Path, out: Path, model: str) -> list[dict]:
    assert main(["audit", str(folder), "--out", str(out), "--model", model, *COMMON]) == 0
    return read_results(out / "results.jsonl")


REPO_TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "report.toml"


def _report_text(out: Path, monkeypatch) -> str:
    """The cover pages of the report built with this checkout's template (the installed
    ``medig.templates`` may be another checkout's)."""
    from pypdf import PdfReader

    import medig.report.template as template
    from medig.report import build_report

    monkeypatch.setattr(template, "default_template_path", lambda: REPO_TEMPLATE)
    pdf = build_report(out)
    return " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(pdf).pages[:3])


def test_shortcut_model_is_flagged_on_stamped_rows_only(stamped_folder, tmp_path,
                                                        monkeypatch) -> None:
    folder, truth = stamped_folder
    out = tmp_path / "shortcut"
    rows = _audit(folder, out, "demo-shortcut")
    assert len(rows) == N
    for r in rows:
        stamped = truth[r["path"]]
        assert r["predicted"] == ("stamp" if stamped else "no stamp")
        assert ("evidence-outside-retina" in r["trust_flags"]) == stamped, r
        assert (r["outside_fov_share"] > 0.25) == stamped
        if stamped:  # the overlay (right panel) shows the stamp's evidence in its corner
            panel = np.asarray(Image.open(out / r["overlay"]).convert("RGB")).astype(int)
            w = (panel.shape[1] - 8) // 2
            over = panel[:, w + 8:]
            corner = over[: w // 6, -w // 6:]
            colour = np.abs(corner[..., 1] - corner[..., 0]).max()
            assert colour > 100  # saturated green or red, not the black of "not analysed"


    # the cohort finding: outside the retina, its box on the stamp (in model-input fractions: the
    # crop puts the FOV circle's centre at 0.5 and its radius at 1 / (2 * 1.03))
    findings = json.loads((out / "manifest.json").read_text())["findings"]
    assert [f["kind"] for f in findings] == ["outside-retina"]
    f = findings[0]
    assert f["images"] == sum(truth.values()) and set(f["examples"]) <= {
        k for k, v in truth.items() if v}
    x0, y0, x1, y1 = (0.5 + v / 2.06 for v in STAMP_BOX)
    wx0, wy0, wx1, wy1 = f["where"]
    assert wx0 <= (x0 + x1) / 2 <= wx1 and wy0 <= (y0 + y1) / 2 <= wy1
    assert (wx1 - wx0) * (wy1 - wy0) < 0.05  # a box on the stamp, not the frame
    stamped = [r for r in rows if truth[r["path"]]]
    assert all(r["top_regions"][0]["on"] == "frame_corners" for r in stamped)
    assert all(r["region_evidence"]["frame_corners"]["pos"] > 0.4 for r in stamped)
    text = _report_text(out, monkeypatch)
    assert "What does the model rely on?" in text
    assert "Evidence outside the retina: in 3 of 6 images" in text and "top right" in text


def test_demo_model_is_not_flagged_on_the_same_images(stamped_folder, tmp_path,
                                                     monkeypatch) -> None:
    folder, _ = stamped_folder
    out = tmp_path / "demo"
    rows = _audit(folder, out, "demo")
    assert all("evidence-outside-retina" not in r["trust_flags"] for r in rows)
    assert max(r["outside_fov_share"] for r in rows) < 0.25
    assert json.loads((out / "manifest.json").read_text())["findings"] == []
    for r in rows:  # the region table adds up
        ev = r["region_evidence"]
        assert abs(sum(v["area"] for v in ev.values()) - 1) < 1e-3
        assert abs(sum(v["pos"] for v in ev.values()) - 1) < 1e-3
    text = _report_text(out, monkeypatch)
    assert "What does the model rely on?" in text and "No shortcut found" in text
