# SPDX-License-Identifier: Apache-2.0
"""What kind of field of view a photograph has: a disk, a disk cut by the frame, the whole frame
(no black border) or none -- and that no disk is ever invented inside a full frame."""
from __future__ import annotations

import math

import pytest
import torch

from medig.preprocess import FOV_SHAPES, FundusPreprocess, detect_fov, detect_fov_circles, fov_mask
from medig.synthetic.disk import synthetic_disk

H, W = 300, 400


def crop_inside(img: torch.Tensor, cx: float, cy: float, r: float) -> torch.Tensor:
    """The 4:3 rectangle inscribed in the disk: retina edge to edge, no black border."""
    hw, hh = 0.7 * r, 0.52 * r  # corners at 0.87 r: clear of the vignetted rim
    return img[:, round(cy - hh):round(cy + hh), round(cx - hw):round(cx + hw)].contiguous()


def test_shapes_of_disks_cut_disks_full_frames_and_blanks():
    disk = synthetic_disk(H, W, 200, 150, 135, seed=0)
    cut = synthetic_disk(H, W, 200, 150, 180, seed=1)  # taller than the frame
    band = synthetic_disk(H, W, 200, 150, 175, cut=(20, 280), seed=2)  # camera-mask rows
    big = synthetic_disk(600, 800, 400, 300, 290, vignetting=0.6, seed=3)
    full = crop_inside(big, 400, 300, 290)  # strongly vignetted, yet no black border
    white = torch.full((3, H, W), 255, dtype=torch.uint8)
    grey = torch.full((3, H, W), 90, dtype=torch.uint8)
    black = torch.zeros(3, H, W, dtype=torch.uint8)
    fov = detect_fov([disk, cut, band, full, white, grey, black])
    assert fov.shape_names() == ["circle", "cut", "cut", "full_frame", "full_frame",
                                 "full_frame", "none"]
    assert fov.found.tolist() == [True] * 6 + [False]
    assert FOV_SHAPES[int(fov.shape[3])] == "full_frame"


def test_full_frame_field_covers_the_frame_and_crops_the_whole_image():
    big = synthetic_disk(600, 800, 400, 300, 290, vignetting=0.6, seed=3)
    full = crop_inside(big, 400, 300, 290)
    h, w = full.shape[1:]
    # The circle passes through the frame's corners: the mask is the whole frame.
    cx, cy, r = detect_fov_circles(full[None])[0].tolist()
    assert (cx, cy) == pytest.approx((w / 2, h / 2)) and r == pytest.approx(math.hypot(w, h) / 2)
    assert bool(fov_mask(full[None]).all())
    white = torch.full((3, H, W), 255, dtype=torch.uint8)
    assert bool(fov_mask(white[None]).all())  # an over-exposed frame: no disk drawn inside it
    # The model sees the whole photograph (padded to a square), not a disk cut out of it.
    x, masks, boxes = FundusPreprocess(size=64).forward_with_boxes([full])
    side = max(h, w)
    assert boxes[0].tolist() == [(w - side) // 2, (h - side) // 2, (w - side) // 2 + side,
                                 (h - side) // 2 + side]
    rows = masks[0, 0].any(dim=1)
    assert abs(rows.float().mean().item() - h / side) < 0.05  # the frame, not a disk
    assert bool(masks[0, 0, 32, :].all())


def test_red_free_and_text_keep_the_disk():
    colour = synthetic_disk(H, W, 190, 155, 130, lesions=4, seed=5)
    grey = colour.float().mul(torch.tensor([0.3, 0.59, 0.11]).view(3, 1, 1)).sum(0, keepdim=True)
    grey = grey.round().byte().expand(3, -1, -1).contiguous()
    text = synthetic_disk(H, W, 190, 155, 130, lesions=4, text=True, seed=5)
    fov = detect_fov([colour, grey, text])
    assert fov.shape_names() == ["circle"] * 3
    for cx, cy, r in fov.circles.tolist():
        assert abs(cx - 190) < 3 and abs(cy - 155) < 3 and abs(r - 130) < 4


def test_dim_aperture_around_a_lit_disk_is_the_field():
    # A small pupil: the retina is lit only near the centre, the rest of the aperture is dim
    # (haze) but not black. The field of view is the aperture, not the lit part.
    ys = torch.arange(H).view(-1, 1) + 0.5
    xs = torch.arange(W).view(1, -1) + 0.5
    d = torch.sqrt((xs - 200) ** 2 + (ys - 150) ** 2)
    lit = synthetic_disk(H, W, 200, 150, 135, seed=6).float()
    light = torch.clamp((95 - d) / 20, 0, 1)
    img = lit * light + torch.where(d <= 135, 25.0, 4.0) * (1 - light)
    fov = detect_fov([img.round().byte()])
    assert fov.shape_names() == ["circle"]
    assert abs(float(fov.circles[0, 2]) - 135) < 4


def test_field_of_view_indexing_and_lists_of_mixed_sizes():
    a = synthetic_disk(H, W, 200, 150, 135, seed=0)
    b = synthetic_disk(200, 200, 100, 100, 90, seed=1)
    fov = detect_fov([a, b, a])
    assert len(fov) == 3 and fov.sizes.tolist() == [[H, W], [200, 200], [H, W]]
    torch.testing.assert_close(fov[0].circles, fov[2].circles)
    with pytest.raises(ValueError, match="different sizes"):
        fov.mask()
    assert fov[1].mask().shape == (1, 1, 200, 200)
