# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch

from medig.preprocess import FundusPreprocess, crop_boxes
from medig.synthetic.disk import synthetic_disk


def _images() -> list[torch.Tensor]:
    return [
        synthetic_disk(300, 400, 200, 150, 135, seed=0),
        synthetic_disk(240, 320, 160, 120, 150, seed=1, lesions=4),  # cut top and bottom
        synthetic_disk(300, 400, 190, 155, 120, seed=2, text=True, notch=True),
        synthetic_disk(360, 360, 180, 180, 170, seed=3, brightness=0.2),
    ]


@pytest.mark.parametrize("kw", [{}, {"graham": True}, {"crop": False}])
def test_list_of_mixed_sizes_equals_per_image_calls(kw: dict) -> None:
    pre = FundusPreprocess(size=64, **kw)
    imgs = _images()
    out, masks, boxes = pre.forward_with_boxes(imgs)
    assert out.shape == (4, 3, 64, 64) and out.dtype == torch.float32
    assert masks.shape == (4, 1, 64, 64) and masks.dtype == torch.bool
    assert boxes.shape == (4, 4)
    assert 0.0 <= out.min() and out.max() <= 1.0
    for i, im in enumerate(imgs):
        o, m, b = pre.forward_with_boxes([im])
        torch.testing.assert_close(o[0], out[i], atol=1e-5, rtol=0)
        assert torch.equal(m[0], masks[i]) and torch.equal(b[0], boxes[i])
    # The mask is the disk: pi/4/(1+margin)^2 of a FOV crop (less where cut / shrunk by Graham),
    # the disk's share of the padded square without cropping.
    frac = masks.float().mean((1, 2, 3))
    if kw.get("crop", True):
        full = torch.pi / 4 / 1.03**2 * (0.95**2 if kw.get("graham") else 1.0)
        assert abs(frac[0] - full) < 0.02 and abs(frac[2] - full) < 0.02
        assert frac[1] < full - 0.05  # cut by the frame top and bottom
    else:
        assert abs(frac[0] - torch.pi * 135**2 / 400**2) < 0.02


def test_uint8_batch_tensor_and_float_input_agree() -> None:
    imgs = torch.stack([_images()[0], _images()[2]])
    pre = FundusPreprocess(size=48)
    a, ma = pre(imgs)
    b, mb = pre(list(imgs))
    c, mc = pre(imgs.float() / 255)
    torch.testing.assert_close(a, b)
    assert torch.equal(ma, mb)
    assert (a - c).abs().max() <= 1.0 / 255 + 1e-6
    assert (ma == mc).float().mean() > 0.99


def test_boxes_are_in_original_coordinates() -> None:
    imgs = _images()
    pre = FundusPreprocess(size=64, margin=0.05)
    out, _, boxes = pre.forward_with_boxes(imgs)
    for i, im in enumerate(imgs):
        again = crop_boxes(im[None], boxes[i : i + 1], 64).float() / 255
        torch.testing.assert_close(again[0], out[i], atol=1e-6, rtol=0)
    # Disk 2 (r=150 in a 240-row frame) is cut: its box leaves the frame at the top.
    assert boxes[1, 1] < 0 and boxes[1, 3] > 240
    side = boxes[0, 2] - boxes[0, 0]
    assert abs(side.item() - 2 * 135 * 1.05) <= 2


def test_device_preserved_and_bad_inputs_raise() -> None:
    out, masks = FundusPreprocess(size=32)([_images()[0]])
    assert out.device.type == "cpu" and masks.device.type == "cpu"
    pre = FundusPreprocess(size=32)
    with pytest.raises(ValueError):
        pre([])
    with pytest.raises(ValueError):
        pre([torch.zeros(4, 10, 10, dtype=torch.uint8)])
    with pytest.raises(ValueError):
        pre([torch.zeros(3, 10, 10, dtype=torch.int32)])
    # Greyscale (1, H, W) is repeated to 3 channels.
    grey = _images()[0][:1]
    o, _ = pre([grey])
    torch.testing.assert_close(o[0, 0], o[0, 1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kw", [{}, {"graham": True}])
def test_cuda_matches_cpu_within_one_level(kw: dict) -> None:
    pre = FundusPreprocess(size=64, **kw)
    imgs = _images()
    cpu, mcpu = pre(imgs)
    gpu, mgpu = pre([im.cuda() for im in imgs])
    assert gpu.device.type == "cuda" and mgpu.device.type == "cuda"
    assert (mgpu.cpu() == mcpu).float().mean() > 0.99
    both = (mgpu.cpu() & mcpu).expand_as(cpu)
    assert (gpu.cpu() - cpu)[both].abs().max() <= 1.0 / 255 + 1e-4 * (1 + 4 * kw.get("graham", 0))
