# SPDX-License-Identifier: Apache-2.0
"""Does the attribution point at the lesions? Pointing game and attribution mass in lesion masks."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["dilate", "localisation"]


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Dilate a bool ``(..., H, W)`` mask by ``radius`` pixels with a square structuring element."""
    if radius <= 0:
        return mask
    shape = mask.shape
    m = mask.reshape(-1, 1, *shape[-2:]).float()
    m = F.max_pool2d(m, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return m.reshape(shape) > 0


def localisation(attr_map: Tensor, lesion_mask: Tensor, fov_mask: Tensor | None = None,
                 dilation: int = 5) -> dict[str, float | bool | None]:
    """Localisation figures of one channel-summed attribution map against its lesion mask.

    Parameters
    ----------
    attr_map : Tensor
        ``(1, H, W)`` channel-summed attribution.
    lesion_mask : Tensor
        ``(1, H, W)`` bool ground-truth lesions (at the same resolution and crop).
    fov_mask : Tensor, optional
        ``(1, H, W)`` bool field of view; the area share is taken inside it.
    dilation : int
        Pixels by which the lesion mask is dilated (lesion rims get attribution; masks are rough).

    Returns
    -------
    dict
        ``pointing_hit``: whether the strongest positive attribution lies in the dilated mask;
        ``mask_mass_fraction``: positive attribution mass inside it / all positive mass;
        ``mask_area_fraction``: its area / the FOV area (the mass fraction a map blind to the
        lesions would get). All None when the mask is empty.
    """
    region = dilate(lesion_mask.bool(), dilation)
    if fov_mask is not None:
        region = region & fov_mask.bool()
    if not region.any():
        return {"pointing_hit": None, "mask_mass_fraction": None, "mask_area_fraction": None}
    positive = attr_map.clamp_min(0)
    total = positive.sum()
    hit = bool(region.flatten()[attr_map.flatten().argmax()]) if total > 0 else False
    mass = float(positive[region].sum() / total) if total > 0 else 0.0
    area_base = fov_mask.bool().sum() if fov_mask is not None else region.numel()
    area = float(region.sum() / max(int(area_base), 1))
    return {"pointing_hit": hit, "mask_mass_fraction": mass, "mask_area_fraction": area}
