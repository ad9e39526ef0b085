# SPDX-License-Identifier: Apache-2.0
"""Tiny fundus photographs and a tiny classifier for the MONAI adapter tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medig.synthetic import generate
from tests.conftest import small_cnn

SIZE = 32  # preprocessed side: small enough for IG on 2 CPU cores in well under a second


def asymmetric_photo(seed: int = 0, height: int = 60, width: int = 84) -> np.ndarray:
    """A synthetic fundus pasted off-centre on a NON-square black frame, with a bright corner mark,
    as (H, W, 3) uint8: any silent transpose or flip changes the result."""
    img, _, _ = generate(1, size=56, seed=seed)
    frame = np.zeros((height, width, 3), np.uint8)
    frame[2:58, 20:76] = img[0].permute(1, 2, 0).numpy()
    frame[0:3, 0:6] = (255, 255, 0)
    return frame


@pytest.fixture(scope="session")
def fundus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four PNGs of different sizes in a folder."""
    root = tmp_path_factory.mktemp("fundus")
    for k, (h, w) in enumerate([(60, 84), (62, 80), (70, 90), (60, 84)]):
        Image.fromarray(asymmetric_photo(k, h, w)).save(root / f"img{k}.png")
    return root


@pytest.fixture
def model() -> torch.nn.Module:
    return small_cnn(seed=1)
