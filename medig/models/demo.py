# SPDX-License-Identifier: Apache-2.0
"""The demo classifier: a small ResNet-style CNN for referable diabetic retinopathy.

Trained on :mod:`medig.synthetic` images (``examples/train_demo_model.py``) and shipped as a state
dict in ``medig/models/weights/demo.pt`` so that an audit runs offline without downloading weights.
It is a teaching and testing model, not a medical device.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DemoNet"]


class _Block(nn.Module):
    """Basic residual block (two 3x3 convolutions) that also changes width and resolution."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class DemoNet(nn.Module):
    """Small ResNet-style classifier: 2 logits (no referable DR, referable DR).

    A 3x3 stride-2 stem and four stride-2 residual stages (widths ``widths``), then global average
    pooling and a linear layer. Strided convolutions instead of max pooling, and global *average*
    pooling, spread gradients over all the evidence rather than routing them through a few maxima,
    which keeps Integrated Gradients maps readable. About 0.2 M parameters.

    Parameters
    ----------
    num_classes : int
        Number of output logits.
    widths : tuple of int
        Channels of the stem and the four stages.

    Notes
    -----
    The network expects *normalised* input; :func:`medig.load_model` wraps it with
    :func:`medig.with_normalization` so the loaded model takes pixel-space RGB in [0, 1].
    """

    def __init__(self, num_classes: int = 2, widths: tuple[int, ...] = (16, 24, 32, 64, 96)) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"widths needs 5 entries (stem + 4 stages), got {widths}")
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.stages = nn.Sequential(*(_Block(widths[i], widths[i + 1], 2) for i in range(4)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, num_classes)`` for normalised images ``(N, 3, H, W)``."""
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))
