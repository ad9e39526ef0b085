# SPDX-License-Identifier: Apache-2.0
"""Where an image's evidence lies relative to its field of view: the share of ``|attribution|``
outside the retina (:func:`outside_fov_share`).

A fundus classifier should read the retina. Evidence outside the field of view (FOV) is evidence
on the camera's black surround, burned-in text or a date stamp, or the aperture's rim: a
shortcut. IG with the audit's black and blurred references gives almost none there on a model
that reads the retina (``x - x'`` is near zero on a black surround), so a large share is a
finding (threshold: :data:`medig.checks.thresholds.OUTSIDE_SHARE_MAX`).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["outside_fov_share"]


def outside_fov_share(maps: Tensor, fov: Tensor | None) -> Tensor:
    """Share of each map's ``|attribution|`` that lies outside its field of view.

    Parameters
    ----------
    maps : Tensor
        ``(N, 1, H, W)`` (or ``(N, C, H, W)``, summed over channels first) attribution maps.
    fov : Tensor or None
        Bool ``(N, 1, H, W)`` field of view. None: no FOV, the share is NaN.

    Returns
    -------
    Tensor
        float64 ``(N,)`` in ``[0, 1]`` on the maps' device; NaN where the map is all zero (or not
        finite) or there is no FOV.
    """
    if maps.ndim != 4:
        raise ValueError(f"maps must be (N, C, H, W), got {tuple(maps.shape)}")
    a = maps.detach().double().sum(1).abs()
    a = torch.where(torch.isfinite(a), a, torch.zeros((), dtype=a.dtype, device=a.device))
    total = a.flatten(1).sum(1)
    if fov is None:
        return torch.full_like(total, float("nan"))
    if fov.shape[0] != maps.shape[0] or fov.shape[-2:] != maps.shape[-2:]:
        raise ValueError(f"fov {tuple(fov.shape)} does not match maps {tuple(maps.shape)}")
    outside = ~fov.to(a.device).bool().any(1)
    share = (a * outside).flatten(1).sum(1) / total
    return torch.where(total > 0, share, torch.full_like(share, float("nan")))
