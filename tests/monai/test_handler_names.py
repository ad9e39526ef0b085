# SPDX-License-Identifier: Apache-2.0
"""The MONAI handler names files as ``medig audit`` does: any name the file system holds."""
from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("monai")
pytest.importorskip("ignite")

from monai.data import DataLoader, Dataset, PILReader
from monai.engines import SupervisedEvaluator
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from PIL import Image

from medig.audit import read_results
from medig.audit.store import output_name, parse_row_path
from medig.monai import IntegratedGradientsHandler, PreprocessFundusd
from tests.monai.conftest import SIZE, asymmetric_photo

NAMES = [b"caf\xff.png", "a\u2028b#1%.png".encode(), b"plain.png"]


def test_handler_rows_take_any_file_name(model, tmp_path):
    folder = os.path.join(os.fsencode(tmp_path), b"in")
    os.mkdir(folder)
    files = []
    for k, name in enumerate(NAMES):
        path = os.path.join(folder, name)
        with open(path, "wb") as fh:
            Image.fromarray(asymmetric_photo(k)).save(fh, format="PNG")
        files.append(os.fsdecode(path))
    transform = Compose([
        LoadImaged("image", reader=PILReader(), image_only=True), EnsureChannelFirstd("image"),
        PreprocessFundusd("image", size=SIZE, reverse_indexing=True),
    ])
    loader = DataLoader(Dataset([{"image": f, "label": 0} for f in files], transform),
                        batch_size=2, num_workers=0)
    out = tmp_path / "audit"
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader,
                                    network=model)
    IntegratedGradientsHandler(out, ["healthy", "referable"], max_steps=16,
                               output="logit").attach(evaluator)
    with torch.no_grad():
        evaluator.run()
    rows = read_results(out / "results.jsonl")  # every row, none cut by a line break
    assert sorted(parse_row_path(r["path"]) for r in rows) == sorted(
        (os.fsdecode(n), None) for n in NAMES)
    for row in rows:
        rel = parse_row_path(row["path"])[0]
        assert row["overlay"] == f"overlays/{output_name(rel)}.png"
        assert (out / row["overlay"]).is_file()
        row["overlay"].encode("utf-8")
