# SPDX-License-Identifier: Apache-2.0
"""Hand-built audit pieces for unit tests of the audit core: a plan and an :class:`AuditContext`
around the tiny model, and an :class:`ImageBatch` of a few small synthetic photographs.

Decoded photographs are 160 px (the quality gate needs a field of view of 128 px to call one
gradeable); the model input is 32 px, so every step runs in milliseconds.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from medig.attr import FundusIntegratedGradients
from medig.attr.class_group import ClassGroup
from medig.attr.outputs import explained_output
from medig.audit.finalise import FinishedAudit
from medig.audit.inputs import AuditInput, DecodedInput
from medig.audit.plan import AuditPlan, resolve
from medig.audit.settings import AuditSettings
from medig.audit.steps import AuditContext, ImageBatch
from medig.audit.store import WorkStore, record_key
from medig.models import LoadedModel
from medig.synthetic import generate
from medig.utils import sha256_file
from tests.audit.tiny_models import make_tiny

CLASSES = ("healthy", "referable")
SIZE = 32  # model input side
PHOTO = 160  # decoded photograph side

#: Settings of a cheap audit: one baseline, few steps, a small model input.
FAST = dict(size=SIZE, baselines=("black",), max_steps=16, batch_size=4, workers=0,
            sanity_sample=0)


def settings(**changes) -> AuditSettings:
    """:data:`FAST` settings with ``changes``."""
    return AuditSettings(**{**FAST, **changes})


def plan_for(s: AuditSettings, model: nn.Module | None = None,
             default_target: int | ClassGroup | None = None) -> AuditPlan:
    """The plan :func:`resolve` makes for ``s`` and the tiny model (two classes)."""
    loaded = LoadedModel(model if model is not None else make_tiny(), list(CLASSES),
                         input_size=SIZE, weights_sha256="ab" * 32, default_target=default_target)
    return resolve(s, loaded)


def make_context(out_dir: Path, s: AuditSettings | None = None,
                 model: nn.Module | None = None) -> AuditContext:
    """An audit context on the CPU, composed as the auditor composes it (no compile)."""
    s = s if s is not None else settings()
    model = model if model is not None else make_tiny()
    plan = plan_for(s, model)
    group = plan.target if isinstance(plan.target, ClassGroup) else None
    forward = explained_output(model, s.output, group)
    return AuditContext(model=model, forward=forward,
                        ig=FundusIntegratedGradients(forward, baselines=list(s.baselines)),
                        plan=plan, device=torch.device("cpu"), store=WorkStore(out_dir),
                        out_dir=out_dir)


def photographs(n: int = 3, seed: int = 0, size: int = PHOTO) -> Tensor:
    """``(n, 3, size, size)`` uint8 synthetic fundus photographs."""
    return generate(n, size=size, seed=seed)[0]


def write_inputs(folder: Path, pixels: Sequence[Tensor], names: Sequence[str] | None = None,
                 masks_dir: Path | None = None) -> list[AuditInput]:
    """Save ``pixels`` as PNG files in ``folder``; their audit inputs."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(names) if names is not None else [f"img{i}.png" for i in range(len(pixels))]
    items = []
    for name, image in zip(names, pixels):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
        items.append(AuditInput(path=path, rel=name, size=path.stat().st_size,
                                masks_dir=masks_dir))
    return items


def keys_of(items: Sequence[AuditInput], plan: AuditPlan) -> list[str]:
    """The record key of each input under ``plan``."""
    return [record_key(sha256_file(it.path), plan.key()) for it in items]


def make_batch(ctx: AuditContext, folder: Path, n: int = 3, seed: int = 0,
               pixels: Sequence[Tensor] | None = None,
               masks_dir: Path | None = None) -> ImageBatch:
    """A freshly decoded batch of ``n`` photographs (written as PNGs in ``folder``)."""
    pixels = list(pixels) if pixels is not None else list(photographs(n, seed))
    items = write_inputs(folder, pixels, masks_dir=masks_dir)
    return ImageBatch(inputs=items, frames=[None] * len(items), keys=keys_of(items, ctx.plan),
                      pixels=pixels,
                      metadata=[{"format": "png", "width": int(p.shape[-1]),
                                 "height": int(p.shape[-2]), "frames": 1} for p in pixels],
                      masks=[None] * len(items))


def decoded(items: Sequence[AuditInput], pixels: Sequence[Tensor]) -> list[DecodedInput]:
    """What a decoding worker hands back for ``items`` (index = position in ``items``)."""
    out = []
    for i, (item, image) in enumerate(zip(items, pixels)):
        out.append(DecodedInput(index=i, frames=[image], masks=[None],
                                metadata=[{"format": "png", "width": int(image.shape[-1]),
                                           "height": int(image.shape[-2]), "frames": 1}],
                                sha256=sha256_file(item.path)))
    return out


def finished(ctx: AuditContext, items: Sequence[AuditInput], rows: list[dict],
             keys: Sequence[str] | None = None, model: nn.Module | None = None) -> FinishedAudit:
    """What an audit step sees once ``rows`` are final."""
    keys = keys if keys is not None else keys_of(items, ctx.plan)
    return FinishedAudit(out_dir=ctx.out_dir, plan=ctx.plan, items=list(items), rows=rows,
                         store=ctx.store, key_of={it.rel: k for it, k in zip(items, keys)},
                         model=model, device=torch.device("cpu"))
