# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch

from medig.preprocess import circle_mask, detect_fov_circles, fov_circles, fov_mask
from medig.synthetic.disk import synthetic_disk

H, W = 300, 400
CASES = {
    "centred": dict(cx=200, cy=150, r=135),
    "off_centre": dict(cx=172.3, cy=161.8, r=118),
    "cut_by_frame": dict(cx=200, cy=150, r=180),  # disk taller than the frame: cut top and bottom
    "cut_by_frame_low": dict(cx=205, cy=170, r=175),  # asymmetric cut, centre not mid-frame
    "camera_mask_band": dict(cx=200, cy=150, r=175, cut=(20, 280)),  # black rows inside frame
    "dark": dict(cx=200, cy=150, r=135, brightness=0.12, noise=2.0),
    "notch": dict(cx=200, cy=150, r=135, notch=True),
    "corner_text": dict(cx=200, cy=150, r=135, text=True),
    "dark_lesions": dict(cx=200, cy=150, r=135, lesions=10),
    "everything": dict(cx=196, cy=155, r=170, brightness=0.2, notch=True, text=True, lesions=8,
                       cut=(15, 290)),
}


def _img(case: dict, seed: int = 0) -> torch.Tensor:
    return synthetic_disk(H, W, **case, seed=seed)


@pytest.mark.parametrize("name", list(CASES))
def test_detect_fov_circles_recovers_known_circle(name: str) -> None:
    case = CASES[name]
    cx, cy, r = detect_fov_circles(_img(case)[None])[0].tolist()
    assert abs(cx - case["cx"]) <= 0.02 * case["r"], (cx, case)
    assert abs(cy - case["cy"]) <= 0.02 * case["r"], (cy, case)
    assert abs(r - case["r"]) <= 0.03 * case["r"], (r, case)


def test_batched_equals_single_and_float_equals_uint8() -> None:
    imgs = torch.stack([_img(CASES[k], seed=i) for i, k in enumerate(CASES)])
    batched = detect_fov_circles(imgs)
    single = torch.cat([detect_fov_circles(im[None]) for im in imgs])
    torch.testing.assert_close(batched, single, atol=1e-3, rtol=0)
    as_float = detect_fov_circles(imgs.float() / 255)
    torch.testing.assert_close(as_float, batched, atol=0.5, rtol=0)


def test_fov_mask_is_the_disk_without_holes_notch_or_text() -> None:
    case = CASES["everything"]
    img = _img(case)
    mask = fov_mask(img[None])
    assert mask.shape == (1, 1, H, W) and mask.dtype == torch.bool
    truth = synthetic_disk(H, W, **{**case, "notch": False, "text": False, "lesions": 0},
                           noise=0.0, background=0.0)[None].amax(1, keepdim=True) > 0
    truth &= circle_mask(torch.tensor([[case["cx"], case["cy"], case["r"]]]), H, W)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.98, float(iou)
    # Corner text (top-left) is outside, the notch region (right rim) and the lesions are inside.
    assert not mask[0, 0, :10, :60].any()
    assert mask[0, 0, 155, 196 + 160]
    # Black camera-mask rows inside the frame are excluded.
    assert not mask[0, 0, :14].any() and not mask[0, 0, 291:].any()
    assert mask[0, 0, 20, 196]


def test_fov_circles_from_mask_roundtrip_and_robust_to_holes() -> None:
    circles = torch.tensor([[200.0, 150.0, 120.0], [180.5, 140.25, 175.0]])
    masks = circle_mask(circles, H, W)
    masks[0, 0, 140:160, 150:250] = False  # a hole (lesion): no effect on the outer envelope
    masks[0, 0, 10:20, 5:40] = True  # a stray blob: an outlier
    fitted = fov_circles(masks)
    torch.testing.assert_close(fitted, circles, atol=1.0, rtol=0)
    # 3-D input (N, H, W) is accepted.
    torch.testing.assert_close(fov_circles(masks[:, 0]), fitted)


def test_blank_image_gets_fallback_circle_and_bad_input_raises() -> None:
    blank = torch.zeros(2, 3, 60, 80, dtype=torch.uint8)
    circles = detect_fov_circles(blank)
    torch.testing.assert_close(circles, torch.tensor([[40.0, 30.0, 40.0]] * 2))
    with pytest.raises(ValueError, match="4-D"):
        fov_mask(torch.zeros(3, 60, 80, dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    imgs = torch.stack([_img(CASES[k], seed=i) for i, k in enumerate(CASES)])
    cpu = detect_fov_circles(imgs)
    gpu = detect_fov_circles(imgs.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=0.01 * 135, rtol=0)
    agree = (fov_mask(imgs.cuda()).cpu() == fov_mask(imgs)).float().mean()
    assert agree > 0.995
