# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import math

import pytest
import torch

from medig.synthetic import MIN_LESION_FRACTION, generate, referable

SIZE = 96  # small frames keep the module's tests well under a few seconds


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return generate(24, size=SIZE, seed=11)


def test_shapes_and_dtypes(batch):
    images, masks, labels = batch
    assert images.shape == (24, 3, SIZE, SIZE) and images.dtype == torch.uint8
    assert masks.shape == (24, 1, SIZE, SIZE) and masks.dtype == torch.bool
    assert labels.shape == (24,) and labels.dtype == torch.int64
    assert set(labels.unique().tolist()) <= {0, 1}


def test_same_seed_is_identical_and_other_seed_differs(batch):
    again = generate(24, size=SIZE, seed=11)
    for a, b in zip(batch, again):
        assert torch.equal(a, b)
    other = generate(24, size=SIZE, seed=12)
    assert not torch.equal(batch[0], other[0])
    assert not torch.equal(batch[1], other[1])


def test_image_does_not_depend_on_batch_size(batch):
    head = generate(5, size=SIZE, seed=11)
    for a, b in zip(batch, head):
        assert torch.equal(a[:5], b)


def test_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate(2, size=64, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_labels_follow_the_rule_on_masks(batch):
    _, masks, labels = batch
    area = masks.flatten(1).sum(1)
    threshold = math.ceil(MIN_LESION_FRACTION * SIZE * SIZE)
    assert torch.equal(labels, (area >= threshold).long())
    assert torch.equal(referable(masks), labels)
    assert int(area[labels == 0].sum()) == 0, "label-0 images must have empty lesion masks"
    assert 0 < int(labels.sum()) < len(labels), "both classes expected in 24 draws at p=0.5"


def test_p_disease_extremes():
    _, masks0, labels0 = generate(6, size=64, seed=3, p_disease=0.0)
    assert int(labels0.sum()) == 0 and not masks0.any()
    _, _, labels1 = generate(6, size=64, seed=3, p_disease=1.0)
    assert int(labels1.sum()) == 6


def test_looks_like_a_fundus(batch):
    images, masks, _ = batch
    img = images.float() / 255
    c = SIZE // 2
    centre = img[:, :, c - 8:c + 8, c - 8:c + 8].mean(dim=(2, 3))
    corners = img[:, :, :4, :4].mean(dim=(1, 2, 3))
    # Black outside the field of view, a red-dominant retina inside it.
    assert float(corners.max()) < 0.06
    assert bool((centre[:, 0] > centre[:, 1]).all() and (centre[:, 1] > centre[:, 2]).all())
    # Periphery darker than the centre (vignetting), measured on a ring inside the field.
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    rho = torch.sqrt((yy - c + 0.5) ** 2 + (xx - c + 0.5) ** 2) / SIZE
    ring = img[:, 0][:, (rho > 0.3) & (rho < 0.36)].mean(1)
    core = img[:, 0][:, rho < 0.15].mean(1)
    assert float((ring < core).float().mean()) > 0.8
    # Lesions lie inside the field of view (non-black pixels).
    assert bool((img.sum(1, keepdim=True)[masks] > 0.1).all())


def test_lesions_change_the_pixels_they_mark():
    # Same draws with and without disease: only pixels near the masks may differ.
    sick, masks, labels = generate(6, size=SIZE, seed=5, p_disease=1.0)
    assert int(labels.sum()) == 6
    healthy, masks0, _ = generate(6, size=SIZE, seed=5, p_disease=0.0)
    assert not masks0.any()
    diff = (sick.int() - healthy.int()).abs().amax(1, keepdim=True) > 8
    near = torch.nn.functional.max_pool2d(masks.float(), 9, stride=1, padding=4) > 0
    assert bool(diff.any())
    assert float((diff & near).sum() / diff.sum()) > 0.97
    # And most of every mask shows a visible change.
    assert float((diff & masks).sum() / masks.sum()) > 0.5


@pytest.mark.parametrize("kwargs", [{"n": -1}, {"n": 2, "size": 16}, {"n": 2, "p_disease": 1.5}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        generate(**kwargs)


def test_empty():
    images, masks, labels = generate(0, size=64)
    assert images.shape == (0, 3, 64, 64) and masks.shape == (0, 1, 64, 64) and labels.numel() == 0


def test_shipped_examples_match_their_masks_and_labels():
    import json
    from pathlib import Path

    import numpy as np
    from PIL import Image

    root = Path(__file__).resolve().parents[2] / "examples" / "fundus"
    index = json.loads((root / "labels.json").read_text())["images"]
    assert len(index) >= 10
    formats = {Path(r["file"]).suffix for r in index}
    assert {".jpg", ".png", ".tif", ".dcm"} <= formats
    for row in index:
        labels = row["label"] if isinstance(row["label"], list) else [row["label"]]
        assert len(labels) == len(row["masks"])
        for label, mask_rel in zip(labels, row["masks"]):
            with Image.open(root / mask_rel) as m:
                mask = torch.from_numpy(np.asarray(m.convert("L")) > 0)
            assert bool(mask.any()) == bool(label), mask_rel
            if row["file"].endswith(".dcm"):
                continue  # pixel size of DICOM checked by the io tests; PIL cannot open it
            with Image.open(root / row["file"]) as im:
                assert im.size == (mask.shape[1], mask.shape[0]), row["file"]
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 3_000_000


def test_shipped_dicom_examples_are_synthetic_op_files():
    from pathlib import Path

    import pydicom

    root = Path(__file__).resolve().parents[2] / "examples" / "fundus"
    files = sorted(root.rglob("*.dcm"))
    assert len(files) >= 2
    frames = []
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.5.1" and ds.Modality == "OP"
        assert ds.ImageLaterality in ("L", "R") and ds.BitsAllocated == 8
        assert str(ds.PatientName).startswith("SYNTHETIC^")
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"  # JPEG baseline
        frames.append(int(ds.get("NumberOfFrames", 1)))
    assert max(frames) > 1


def test_laterality_matches_the_disc_side():
    from medig.synthetic import laterality

    images, _, _ = generate(12, size=SIZE, seed=21, p_disease=0.0)
    eyes = laterality(12, size=SIZE, seed=21, p_disease=0.0)
    assert set(eyes) == {"L", "R"}
    # The optic disc is the brightest structure: its column tells the side.
    lum = torch.nn.functional.avg_pool2d(images.float().mean(1, keepdim=True), 7, stride=1)
    col = lum.flatten(1).argmax(1) % lum.shape[-1]
    seen = ["R" if c > lum.shape[-1] / 2 else "L" for c in col.tolist()]
    assert seen == eyes
