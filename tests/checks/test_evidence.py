# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import math

import pytest
import torch

from medig.checks import outside_fov_share


def test_outside_share_is_the_share_of_absolute_attribution_outside_the_fov() -> None:
    maps = torch.zeros(3, 1, 8, 8)
    fov = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    fov[:, :, 2:6, 2:6] = True
    maps[0, 0, 3, 3] = 3.0  # all inside
    maps[0, 0, 4, 4] = -1.0
    maps[1, 0, 0, 0] = -2.0  # outside: negative evidence counts by magnitude
    maps[1, 0, 3, 3] = 2.0
    # image 2: all zero -> not measurable
    share = outside_fov_share(maps, fov)
    assert share.dtype == torch.float64 and share.shape == (3,)
    assert share[0] == 0.0 and share[1] == pytest.approx(0.5) and math.isnan(share[2])
    assert outside_fov_share(maps, None).isnan().all()
    # channels are summed first: +1 and -1 in two channels cancel
    rgb = torch.zeros(1, 3, 8, 8)
    rgb[0, 0, 0, 0], rgb[0, 1, 0, 0], rgb[0, 0, 3, 3] = 1.0, -1.0, 1.0
    assert outside_fov_share(rgb, fov[:1]) == 0.0
    with pytest.raises(ValueError):
        outside_fov_share(maps, fov[:2])
