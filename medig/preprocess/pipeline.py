# SPDX-License-Identifier: Apache-2.0
"""``FundusPreprocess``: from decoded uint8 fundus photographs of any size to a model-ready batch."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal, overload

import torch
from torch import Tensor, nn

from medig.preprocess._images import image_list
from medig.preprocess.crop import _crop_circle_masks, _crop_list, _field_boxes, _frame_box
from medig.preprocess.field_of_view import FieldOfView
from medig.preprocess.fov_detection import WORK_SIZE, _detect
from medig.preprocess.graham import graham as graham_normalise
from medig.preprocess.quality import QualityResult, assess_quality

__all__ = ["FundusPreprocess"]


class FundusPreprocess(nn.Module):
    """Batched fundus preprocessing: FOV detection, square crop on the disk, resize, optional Graham.

    One call processes a whole list of decoded images of mixed sizes: images are grouped by shape
    and every heavy step (FOV detection, circle fit, masks, Graham blur) runs once per group on the
    images' device (CPU or CUDA); crops are resized with PIL's antialiased bilinear filter.

    Parameters
    ----------
    size : int, optional
        Output side in pixels (default 512).
    crop : bool, optional
        True (default): crop a square centred on the FOV circle with ``margin`` around it
        (zero-padded where the disk is cut by the frame), so the disk radius is
        ``size / (2 (1 + margin))`` output pixels. False: pad the whole image to a centred square
        with zeros, resize it, and detect the FOV on the result.
    graham : bool, optional
        Apply :func:`~medig.preprocess.graham` (default False); the returned masks are then the
        shrunk disks Graham keeps (95% of the radius).
    margin : float, optional
        Border around the disk as a fraction of its radius (default 0.03).
    graham_sigma : float, optional
        Blur sigma for Graham, in output pixels (default ``size / 30``).
    work_size : int, optional
        Working resolution of FOV detection (default 256).

    Notes
    -----
    Outputs are pixel-space float32 in [0, 1]; mean/std normalisation belongs to the model wrapper.
    The module has no parameters and runs under ``torch.no_grad()``.

    Examples
    --------
    >>> pre = FundusPreprocess(size=256)
    >>> x, masks = pre([torch.zeros(3, 300, 400, dtype=torch.uint8)])
    >>> x.shape, masks.shape, x.dtype, masks.dtype
    (torch.Size([1, 3, 256, 256]), torch.Size([1, 1, 256, 256]), torch.float32, torch.bool)
    """

    def __init__(
        self,
        size: int = 512,
        crop: bool = True,
        graham: bool = False,
        margin: float = 0.03,
        graham_sigma: float | None = None,
        work_size: int = WORK_SIZE,
    ) -> None:
        super().__init__()
        if size < 8:
            raise ValueError(f"size must be >= 8, got {size}")
        self.size = int(size)
        self.crop = bool(crop)
        self.graham = bool(graham)
        self.margin = float(margin)
        self.graham_sigma = graham_sigma
        self.work_size = int(work_size)

    def extra_repr(self) -> str:
        return (f"size={self.size}, crop={self.crop}, graham={self.graham}, margin={self.margin}, "
                f"graham_sigma={self.graham_sigma}, work_size={self.work_size}")

    def forward(self, images: Tensor | Sequence[Tensor], return_quality: bool = False
                ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, QualityResult]:
        """Preprocess a batch.

        Parameters
        ----------
        images : list of Tensor or Tensor
            uint8 (3, H, W) images of any sizes (or float in [0, 1]; a 1-channel image is repeated
            to 3), or a (N, 3, H, W) tensor; all on one device.
        return_quality : bool, optional
            Also return the image-quality verdicts (:func:`~medig.preprocess.assess_quality`),
            computed from the same field of view (default False).

        Returns
        -------
        images : Tensor
            float32 (N, 3, size, size) in [0, 1], on the input device.
        masks : Tensor
            bool (N, 1, size, size) FOV masks.
        quality : QualityResult
            Only with ``return_quality=True``.
        """
        if return_quality:
            out, masks, _, quality = self.forward_with_boxes(images, return_quality=True)
            return out, masks, quality
        out, masks, _ = self.forward_with_boxes(images)
        return out, masks

    @overload
    def forward_with_boxes(self, images: Tensor | Sequence[Tensor],
                           return_quality: Literal[False] = False
                           ) -> tuple[Tensor, Tensor, Tensor]: ...

    @overload
    def forward_with_boxes(self, images: Tensor | Sequence[Tensor], return_quality: Literal[True]
                           ) -> tuple[Tensor, Tensor, Tensor, QualityResult]: ...

    @overload
    def forward_with_boxes(self, images: Tensor | Sequence[Tensor], return_quality: bool
                           ) -> (tuple[Tensor, Tensor, Tensor]
                                 | tuple[Tensor, Tensor, Tensor, QualityResult]): ...

    @torch.no_grad()
    def forward_with_boxes(self, images: Tensor | Sequence[Tensor], return_quality: bool = False
                           ) -> (tuple[Tensor, Tensor, Tensor]
                                 | tuple[Tensor, Tensor, Tensor, QualityResult]):
        """Like :meth:`forward`, and also return the crop boxes.

        Returns
        -------
        images, masks : Tensor
            As :meth:`forward`.
        boxes : Tensor
            float32 (N, 4) ``x0, y0, x1, y1`` in each *original* image's continuous pixel
            coordinates (integer values; may exceed the frame where it was zero-padded). Crop any
            other per-image tensor (e.g. a lesion mask) the same way with
            ``crop_boxes(t, boxes, size, mode="nearest")``.
        quality : QualityResult
            Only with ``return_quality=True``: the verdicts of the original photographs (before
            any Graham normalisation), from the same field of view.
        """
        items, device = image_list(images)
        n, s = len(items), self.size
        groups: dict[tuple[int, int, torch.dtype], list[int]] = defaultdict(list)
        for k, t in enumerate(items):
            groups[(t.shape[1], t.shape[2], t.dtype)].append(k)
        out = torch.empty((n, 3, s, s), dtype=torch.float32, device=device)
        single = len(groups) == 1  # the common case: write the outputs directly, no index_copy
        if not single:
            masks = torch.empty((n, 1, s, s), dtype=torch.bool, device=device)
            boxes = torch.empty((n, 4), dtype=torch.float32, device=device)
        fovs: dict[int, FieldOfView] = {}
        for (h, w, _), idx in groups.items():
            group = [items[k] for k in idx]
            fov = _detect(group, self.work_size)
            fovs.update({k: fov[j] for j, k in enumerate(idx)})
            circles, bands = fov.circles, fov.bands
            if self.crop:
                gboxes = _field_boxes(circles, fov.full_frame, h, w, self.margin).to(device)
            else:
                gboxes = _frame_box(h, w, device).expand(len(idx), 4)
            # Crops are resized in uint8 (CPU) and written straight into the float output.
            _crop_list(group, gboxes, s, out=out, rows=idx)
            # Masks drawn analytically from the full-resolution fit (cheaper and sharper than
            # rasterising at full size and cropping); with crop=False the zero padding is excluded.
            gmasks = _crop_circle_masks(circles, gboxes, (h, w), s, bands)
            if single:
                masks, boxes = gmasks, gboxes.float().contiguous()
            else:
                index = torch.tensor(idx, device=device)
                masks.index_copy_(0, index, gmasks)
                boxes.index_copy_(0, index, gboxes.float())
        if self.graham:
            out, masks = graham_normalise(out, masks, sigma=self.graham_sigma, return_mask=True)
        if return_quality:
            fov = FieldOfView.cat([fovs[k] for k in range(n)])
            return out, masks, boxes, assess_quality(items, fov)
        return out, masks, boxes
