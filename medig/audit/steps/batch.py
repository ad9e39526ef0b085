# SPDX-License-Identifier: Apache-2.0
"""What the audit's steps share: the images of one batch (:class:`ImageBatch`) and the audit's
fixed context (:class:`AuditContext`).

A batch step is any callable ``step(batch)`` that reads what earlier steps left on the batch and
adds its own: tensors (``images``, ``probs``, ``explanation``, ...) or per-image result fields
(``batch.fields[j]``). Steps never loop over files or write results themselves; the
:class:`~medig.audit.auditor.Auditor` isolates failures and stores the records.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from medig.attr import Explanation, FundusIntegratedGradients
from medig.attr.class_group import ClassGroup
from medig.audit.inputs import AuditInput
from medig.audit.plan import AuditPlan
from medig.audit.settings import AuditSettings
from medig.audit.store import WorkStore

__all__ = ["AuditContext", "BatchStep", "ImageBatch"]


@dataclass
class AuditContext:
    """Everything a step needs that does not change from batch to batch.

    ``plan`` holds the values in effect (size, tolerance, target, ...); ``settings`` what the
    user asked for.
    """

    model: nn.Module  # the classifier, pixel-space input, on ``device``, eval mode
    forward: nn.Module  # the explained output (softmax probability or logit) of ``model``
    ig: FundusIntegratedGradients
    plan: AuditPlan
    device: torch.device
    store: WorkStore
    out_dir: Path

    @property
    def settings(self) -> AuditSettings:
        return self.plan.settings

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.plan.class_names

    @property
    def target(self) -> int | ClassGroup | None:
        """Fixed class or group to explain; None: the predicted class."""
        return self.plan.target


@dataclass
class ImageBatch:
    """The images of one batch (one entry per frame) as they pass through the steps.

    Per-image attributes (lists and tensors whose first dimension is the image) stay aligned:
    :meth:`drop` removes images from all of them at once, so a step may take images out of the
    batch (e.g. skip an ungradeable photograph) and give them a final row of their own.
    """

    inputs: list[AuditInput]
    frames: list[int | None]  # frame index of multi-frame files, None for single-frame files
    keys: list[str]  # record key of each image's input
    pixels: list[Tensor]  # decoded (3, H, W) uint8 on the audit's device
    metadata: list[dict[str, Any]]
    masks: list[Tensor | None]  # lesion masks at the decoded resolution
    fields: list[dict[str, Any]] = field(default_factory=list)  # result fields added by steps
    images: Tensor | None = None  # (N, 3, S, S) model input in [0, 1]
    fov: Tensor | None = None  # (N, 1, S, S) bool
    boxes: Tensor | None = None  # (N, 4) crop boxes in decoded pixels
    probs: Tensor | None = None  # (N, K) float64 class probabilities
    target: Tensor | None = None  # (N,) class explained
    explanation: Explanation | None = None
    maps: Tensor | None = None  # (N, 1, S, S) channel-summed attributions
    quality: list[dict[str, Any]] | None = None  # image-quality verdicts and measures
    #: Images taken out of the batch, as (input, frame, record key, final row).
    finished: list[tuple[AuditInput, int | None, str, dict[str, Any]]] = field(
        default_factory=list)

    def __post_init__(self) -> None:
        if not self.fields:
            self.fields = [{} for _ in self.pixels]

    def __len__(self) -> int:
        return len(self.pixels)

    def drop(self, indices: Sequence[int], rows: Sequence[dict[str, Any]]) -> None:
        """Take images ``indices`` out of the batch; ``rows`` are their final result rows."""
        n, gone = len(self), set(indices)
        for j, row in zip(indices, rows):
            self.finished.append((self.inputs[j], self.frames[j], self.keys[j],
                                  {**self.fields[j], **row}))
        keep = [j for j in range(n) if j not in gone]
        index = torch.tensor(keep, dtype=torch.long)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "finished" or value is None:
                continue
            if isinstance(value, list):
                setattr(self, f.name, [value[j] for j in keep])
            elif isinstance(value, Tensor):
                setattr(self, f.name, value[index.to(value.device)])
            elif isinstance(value, Explanation):
                setattr(self, f.name, _select_explanation(value, index, n))


def _select_explanation(expl: Explanation, index: Tensor, n: int) -> Explanation:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(expl):
        value = getattr(expl, f.name)
        if isinstance(value, Tensor) and value.ndim and value.shape[0] == n:
            changes[f.name] = value[index.to(value.device)]
        elif isinstance(value, list) and value and all(isinstance(v, Tensor) for v in value):
            changes[f.name] = [v[index.to(v.device)] for v in value]
    return dataclasses.replace(expl, **changes)


class BatchStep(Protocol):
    """One step of the audit of a batch: reads and extends ``batch`` in place."""

    def __call__(self, batch: ImageBatch) -> None: ...
