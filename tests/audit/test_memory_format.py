# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch
from torch import nn

from medig.audit.memory_format import prefers_channels_last, to_device
from medig.models.architectures import build_architecture


@pytest.mark.parametrize("spec, kwargs, expected", [
    ("torchvision:resnet18", {}, True),
    ("torchvision:convnext_tiny", {}, True),
    ("torchvision:swin_t", {}, False),  # one patch-embedding convolution, kernel = stride
    ("torchvision:vit_b_16", {"image_size": 32}, False),
])
def test_layout_follows_the_convolutions(spec, kwargs, expected):
    model = build_architecture(spec, 5, kwargs, initialise=False)
    assert prefers_channels_last(model) is expected
    placed = to_device(model, torch.device("cpu"))
    conv = next(m for m in placed.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is expected
    assert not placed.training


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated
def test_scripted_cnn_counts_its_convolutions():
    from tests.conftest import small_cnn

    scripted = torch.jit.script(small_cnn())
    assert prefers_channels_last(scripted)
    assert not prefers_channels_last(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)))


def test_timm_efficientnet_is_a_cnn_and_timm_vit_is_not():
    pytest.importorskip("timm")
    assert prefers_channels_last(build_architecture("timm:efficientnet_b0", 5, initialise=False))
    assert not prefers_channels_last(build_architecture("timm:vit_tiny_patch16_224", 5,
                                                        {"img_size": 32}, initialise=False))
