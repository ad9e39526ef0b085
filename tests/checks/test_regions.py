# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch

from medig.checks.regions import region_evidence, top_regions


def _regions(n: int = 1) -> dict[str, torch.Tensor]:
    left = torch.zeros(n, 1, 64, 64, dtype=torch.bool)
    left[..., :32] = True
    return {"left": left, "right": ~left}


def test_region_evidence_splits_each_sign_and_the_area() -> None:
    maps = torch.zeros(1, 3, 64, 64)
    maps[0, 0, 10, 5] = 3.0  # + on the left
    maps[0, 0, 10, 50] = 1.0  # + on the right
    maps[0, 1, 20, 40] = -2.0  # - on the right
    ev = region_evidence(maps, _regions())[0]
    assert ev["left"] == {"pos": pytest.approx(0.75), "neg": 0.0, "area": 0.5}
    assert ev["right"]["pos"] == pytest.approx(0.25) and ev["right"]["neg"] == 1.0


def test_top_regions_find_the_blobs_rank_and_name_them() -> None:
    maps = torch.zeros(2, 1, 64, 64)
    maps[0, 0, 4:12, 4:12] = 2.0  # strong blob, top left
    maps[0, 0, 40:48, 44:52] = 1.0  # weaker blob, bottom right
    tops = top_regions(maps, _regions(2))
    first, second = tops[0]
    assert first["on"] == "left" and second["on"] == "right"
    assert first["share"] == pytest.approx(2 / 3, abs=0.02)
    assert second["share"] == pytest.approx(1 / 3, abs=0.02)
    x0, y0, x1, y1 = first["where"]
    assert x0 <= 4 / 64 and x1 >= 12 / 64 and y0 <= 4 / 64 and y1 >= 12 / 64 and x1 < 0.3
    assert tops[1] == []  # no positive evidence
