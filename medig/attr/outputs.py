# SPDX-License-Identifier: Apache-2.0
"""Which model output IG explains: a class probability, a logit, or a group's summed probability."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from medig.attr.class_group import ClassGroup

__all__ = ["OUTPUTS", "GroupProbability", "SoftmaxOutput", "explained_output"]

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


class GroupProbability(nn.Module):
    """``P(group) = sum of probabilities(x)[:, members]`` as an ``(N, 1)`` output.

    Parameters
    ----------
    probabilities : nn.Module
        A forward returning class probabilities ``(N, K)``, e.g. :class:`SoftmaxOutput`.
    members : sequence of int
        Output indices of the group's classes.
    """

    def __init__(self, probabilities: nn.Module, members: Sequence[int]) -> None:
        super().__init__()
        self.probabilities = probabilities
        self.register_buffer("members", torch.as_tensor(list(members), dtype=torch.long),
                             persistent=False)

    def forward(self, *args: object) -> Tensor:
        probs = self.probabilities(*args)
        return probs.index_select(1, self.members.to(probs.device)).sum(dim=1, keepdim=True)


def explained_output(model: nn.Module, output: str = "probability",
                     target: ClassGroup | None = None) -> nn.Module:
    """The forward function whose ``output`` (see :data:`OUTPUTS`) IG attributes.

    With a :class:`~medig.attr.class_group.ClassGroup` ``target`` (member indices) the forward
    returns ``P(group)`` as a single ``(N, 1)`` column, so ``explain(x)`` with the default target
    explains the group; a group is only defined on probabilities.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if target is not None:
        if output != "probability":
            raise ValueError(f"a class group ({target.name!r}) is explained as a summed "
                             "probability; output='logit' has no group equivalent")
        return GroupProbability(SoftmaxOutput(model), target.indices).train(model.training)
    return SoftmaxOutput(model).train(model.training) if output == "probability" else model
