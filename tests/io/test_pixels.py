# SPDX-License-Identifier: Apache-2.0
"""The shared 8-bit conversion rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medig.io._pixels import bits_top, scale_to_uint8, to_rgb_tensor


@pytest.mark.parametrize("bits", [1, 10, 12, 16, 32])
def test_scale_endpoints_and_monotonic(bits):
    top = bits_top(bits)
    values = np.unique(np.linspace(0, top, 1000).astype(np.uint64)).astype(np.int64)
    out = scale_to_uint8(values, top)
    assert out[0] == 0 and out[-1] == 255
    assert np.all(np.diff(out.astype(int)) >= 0)


def test_scale_rounds_half_up_and_clips():
    out = scale_to_uint8(np.array([0, 257 * 3, 257 * 3 + 128, 257 * 3 + 129, 70000]), 65535)
    assert out.tolist() == [0, 3, 3, 4, 255]


def test_signed_offset():
    assert scale_to_uint8(np.array([-128, 0, 127], np.int8), 255, offset=128).tolist() == [
        0,
        128,
        255,
    ]


def test_to_rgb_tensor_layouts():
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    t = to_rgb_tensor(grey)
    assert t.shape == (3, 2, 3) and all(torch.equal(t[c], t[0]) for c in range(3))
    rgba = np.dstack([grey, grey + 1, grey + 2, np.zeros_like(grey)])
    assert to_rgb_tensor(rgba)[2].tolist() == (grey + 2).tolist()
    with pytest.raises(TypeError):
        to_rgb_tensor(grey.astype(np.uint16))
