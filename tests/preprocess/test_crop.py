# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from medig.preprocess import circle_mask, crop_boxes, crop_to_fov, fov_boxes, fov_mask
from medig.synthetic.disk import synthetic_disk


def _flat_disk(h: int, w: int, cx: float, cy: float, r: float) -> torch.Tensor:
    m = circle_mask(torch.tensor([[cx, cy, r]]), h, w)
    return (m * 180).to(torch.uint8).expand(1, 3, h, w).contiguous()


def _measured_disk(img: torch.Tensor) -> tuple[float, float, float]:
    """Centroid and area-equivalent radius of the bright pixels (independent of the fit code)."""
    fg = img[0].float().mean(0) > 0.5 * img.float().max()
    ys, xs = torch.nonzero(fg, as_tuple=True)
    return float(xs.float().mean() + 0.5), float(ys.float().mean() + 0.5), math.sqrt(
        fg.sum().item() / math.pi)


def test_fov_boxes_square_integer_and_centred() -> None:
    circles = torch.tensor([[200.3, 150.6, 120.2], [10.0, -5.0, 50.0]])
    boxes = fov_boxes(circles, margin=0.05)
    side = boxes[:, 2] - boxes[:, 0]
    torch.testing.assert_close(side, boxes[:, 3] - boxes[:, 1])
    assert torch.equal(boxes, boxes.round())
    torch.testing.assert_close(side, torch.round(2 * circles[:, 2] * 1.05))
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert (centre - circles[:, :2]).abs().max() <= 0.5 + 1e-6
    with pytest.raises(ValueError):
        fov_boxes(torch.zeros(2, 4))


@pytest.mark.parametrize("cx,cy,r", [(200, 150, 130), (170.4, 160.7, 110), (205, 160, 190)])
def test_crop_to_fov_centres_disk_with_documented_radius(cx: float, cy: float, r: float) -> None:
    h, w, size, margin = 300, 400, 128, 0.03
    img = _flat_disk(h, w, cx, cy, r)
    out, masks = crop_to_fov(img, fov_mask(img), size=size, margin=margin)
    assert out.shape == (1, 3, size, size) and out.dtype == torch.float32
    assert masks.shape == (1, 1, size, size) and masks.dtype == torch.bool
    assert 0.0 <= out.min() and out.max() <= 1.0
    mx, my, mr = _measured_disk(out)
    expected_r = size / (2 * (1 + margin))
    if r * 2 <= h:  # whole disk visible: centroid is the centre
        assert abs(mx - size / 2) <= 1.0 and abs(my - size / 2) <= 1.0
        assert abs(mr - expected_r) <= 1.0
    else:  # cut top/bottom: the cut is symmetric about the disk's centre only in x
        assert abs(mx - size / 2) <= 1.0
        scale = size / round(2 * r * (1 + margin))
        top_pad = round((cy - round(2 * r * (1 + margin)) / 2)) * -scale
        assert out[0, :, : int(top_pad) - 1].abs().max() == 0  # zero padding above the frame
        # The row that holds the centre has the full diameter.
        row = out[0, 0, size // 2] > 0.5 * out.max()
        assert abs(row.sum().item() - 2 * expected_r) <= 2.0
    # The mask agrees with the bright disk.
    bright = out[0].mean(0) > 0.5 * out.max()
    assert (bright == masks[0, 0]).float().mean() > 0.99


def _pil_crop_resize(img: torch.Tensor, box: tuple[int, int, int, int], size: int,
                     resample: int) -> np.ndarray:
    arr = img.permute(1, 2, 0).numpy()
    pil = Image.fromarray(arr if arr.shape[2] == 3 else arr[..., 0])
    return np.asarray(pil.crop(box).resize((size, size), resample))


def test_crop_boxes_matches_pil_antialiased_resize() -> None:
    img = synthetic_disk(450, 600, 300, 225, 210, lesions=6, text=True, seed=3)
    boxes = torch.tensor([[80.0, -30.0, 530.0, 420.0], [-40.0, 10.0, 500.0, 550.0]])
    batch = torch.stack([img, img])
    out8 = crop_boxes(batch, boxes, 97)  # shrink 4.6x and 5.6x, odd size
    outf = crop_boxes(batch.float() / 255, boxes, 97)
    assert out8.dtype == torch.uint8 and outf.dtype == torch.float32
    for i, box in enumerate(boxes.int().tolist()):
        ref = _pil_crop_resize(img, tuple(box), 97, Image.BILINEAR).astype(np.float64)
        got8 = out8[i].permute(1, 2, 0).numpy().astype(np.float64)
        gotf = outf[i].permute(1, 2, 0).numpy() * 255
        assert np.abs(got8 - ref).max() <= 1.0
        assert np.abs(gotf - ref).max() <= 1.5 and np.abs(gotf - ref).mean() < 0.3
    # Without antialiasing a 5x shrink aliases: clearly further from PIL on the textured image.
    alias = crop_boxes(batch, boxes, 97, antialias=False)[0].permute(1, 2, 0).numpy()
    ref0 = _pil_crop_resize(img, tuple(boxes[0].int().tolist()), 97, Image.BILINEAR)
    assert np.abs(alias.astype(float) - ref0).mean() > 3 * np.abs(
        out8[0].permute(1, 2, 0).numpy().astype(float) - ref0).mean()


def test_crop_boxes_nearest_for_lesion_masks_matches_pil() -> None:
    g = torch.Generator().manual_seed(0)
    lesions = torch.rand(1, 1, 300, 400, generator=g) > 0.97
    box = torch.tensor([[30.0, -20.0, 370.0, 320.0]])
    out = crop_boxes(lesions, box, 200, mode="nearest")
    assert out.dtype == torch.bool and out.shape == (1, 1, 200, 200)
    ref = _pil_crop_resize((lesions[0] * 255).to(torch.uint8), (30, -20, 370, 320), 200,
                           Image.NEAREST)
    assert np.array_equal(out[0, 0].numpy(), ref > 0)


def test_crop_boxes_rejects_bad_arguments() -> None:
    x = torch.zeros(2, 3, 20, 20, dtype=torch.uint8)
    with pytest.raises(ValueError, match="boxes"):
        crop_boxes(x, torch.zeros(1, 4), 8)
    with pytest.raises(ValueError, match="mode"):
        crop_boxes(x, torch.tensor([[0.0, 0, 10, 10]] * 2), 8, mode="bicubic")
    with pytest.raises(ValueError, match="empty"):
        crop_boxes(x, torch.tensor([[5.0, 5, 5, 10]] * 2), 8)
    # A box entirely outside the frame gives zeros, not an error.
    out = crop_boxes(x + 7, torch.tensor([[100.0, 100, 110, 110], [0, 0, 20, 20]]), 8)
    assert out[0].max() == 0 and out[1].min() == 7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_crop_boxes_cuda_matches_cpu() -> None:
    img = synthetic_disk(450, 600, 300, 225, 210, lesions=6, seed=3)[None]
    boxes = torch.tensor([[80.0, -30.0, 530.0, 420.0]])
    cpu = crop_boxes(img, boxes, 97)
    gpu = crop_boxes(img.cuda(), boxes.cuda(), 97)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.uint8
    assert (gpu.cpu().int() - cpu.int()).abs().max() <= 1
