# SPDX-License-Identifier: Apache-2.0
"""Which model output IG explains: a class probability or a logit."""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["OUTPUTS", "SoftmaxOutput", "explained_output"]

#: ``"probability"``: softmax of the logits (what clinicians read; completeness in probability
#: points, shift-invariant across logits). ``"logit"``: the raw output (no saturation).
OUTPUTS = ("probability", "logit")


class SoftmaxOutput(nn.Module):
    """``softmax(model(x))`` for classifiers that return logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.model(x), dim=1)


def explained_output(model: nn.Module, output: str = "probability") -> nn.Module:
    """The forward function whose ``output`` (see :data:`OUTPUTS`) IG attributes."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    return SoftmaxOutput(model).train(model.training) if output == "probability" else model
