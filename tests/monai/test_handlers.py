# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("ignite")

from monai.data import DataLoader, Dataset, PILReader
from monai.engines import SupervisedEvaluator
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from medig import FundusIntegratedGradients
from medig.monai import IntegratedGradientsHandler, PreprocessFundusd
from tests.monai.conftest import SIZE

CLASSES = ["healthy", "referable"]


def _loader(fundus_dir, batch_size=2):
    transform = Compose([
        LoadImaged("image", reader=PILReader(), image_only=True), EnsureChannelFirstd("image"),
        PreprocessFundusd("image", size=SIZE, reverse_indexing=True),
    ])
    data = [{"image": str(f), "label": 0} for f in sorted(fundus_dir.glob("*.png"))]
    return DataLoader(Dataset(data, transform), batch_size=batch_size, num_workers=0)


@pytest.mark.parametrize("decollate", [True, False])
def test_handler_in_evaluator_writes_an_audit(fundus_dir, model, tmp_path, decollate) -> None:
    out = tmp_path / "audit"
    handler = IntegratedGradientsHandler(out, CLASSES, max_steps=64, output="logit")
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=_loader(fundus_dir),
                                    network=model, decollate=decollate)
    handler.attach(evaluator)
    with torch.no_grad():
        evaluator.run()

    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == [f"img{k}.png" for k in range(4)]
    assert all(r["status"] == "ok" and (out / r["overlay"]).is_file() for r in rows)
    assert not (out / ".medig-monai-work").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["total"] == 4 and manifest["output"] == "logit"
    assert manifest["cohort_clip"] > 0

    # The rows hold the core API's numbers for the same preprocessed images.
    images = torch.cat([b["image"].as_tensor() for b in _loader(fundus_dir)])
    core = FundusIntegratedGradients(model).explain(images, max_steps=64)
    assert [r["score"] for r in rows] == pytest.approx(core.score.tolist(), rel=1e-4)
    assert [r["n_steps"] for r in rows] == core.n_steps.tolist()
    assert [r["flagged"] for r in rows] == core.flagged.tolist()
    # the per-image trust checks and flags, as medig audit writes them
    assert all(isinstance(r["faithfulness"], float) and isinstance(r["trust_flags"], list)
               for r in rows)
    assert all(r["baseline_agreement"] is None for r in rows)  # a single baseline
    assert manifest["trust_checks"]["thresholds"]["faithfulness_min"] == 0.0


def test_handler_sampling_is_deterministic_and_report_builds(fundus_dir, model, tmp_path) -> None:
    def run(out):
        handler = IntegratedGradientsHandler(out, CLASSES, max_steps=64, sample=1, seed=3)
        evaluator = SupervisedEvaluator(device=torch.device("cpu"),
                                        val_data_loader=_loader(fundus_dir), network=model)
        handler.attach(evaluator)
        evaluator.run()
        return (out / "results.jsonl").read_text()

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert first == second and len(first.splitlines()) == 2
    from medig.report import build_report

    pdf = build_report(tmp_path / "a")
    assert pdf.read_bytes().startswith(b"%PDF")
