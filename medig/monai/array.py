# SPDX-License-Identifier: Apache-2.0
"""Array transforms: medig's fundus preprocessing and Integrated Gradients in MONAI's idiom.

Both are thin: :class:`PreprocessFundus` calls :class:`medig.preprocess.FundusPreprocess` and
:class:`ComputeIntegratedGradients` calls :meth:`medig.FundusIntegratedGradients.explain`; they
only adapt MONAI's data layout (channel-first, ``MetaTensor``, 0-255 floats, reversed PIL axes) and
metadata. Named as MONAI names its transforms, by what they do (``ScaleIntensity``,
``ComputeHoVerMaps``), so neither is mistaken for the core ``nn.Module`` it wraps or for Captum's
``IntegratedGradients``; the former names ``FundusPreprocess`` and ``IntegratedGradients`` still
work for one release, with a ``DeprecationWarning``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import Transform
from monai.utils import TransformBackends, convert_to_tensor
from torch import Tensor, nn

from medig._deprecation import renamed_attribute
from medig.attr import Explanation, FundusIntegratedGradients
from medig.baselines import BaselineSpec
from medig.monai._meta import crop_resize_index_map, plain, with_meta
from medig.preprocess import FundusPreprocess as _CorePreprocess

__all__ = [
    "FOV_BOX_KEY",
    "STATS_FIELDS",
    "ComputeIntegratedGradients",
    "PreprocessFundus",
    "eval_mode_of",
    "explanation_stats",
    "to_unit_range",
]

#: Former names, served with a DeprecationWarning until the next release.
_RENAMED = {"FundusPreprocess": "PreprocessFundus",
            "IntegratedGradients": "ComputeIntegratedGradients"}

FOV_BOX_KEY = "medig_fov_box"
"""Metadata entry recording the crop box ``x0, y0, x1, y1`` in the original ``(H, W)`` pixels."""

STATS_FIELDS = ("target", "score", "baseline_score", "delta", "relative_error", "map_error",
                "n_steps", "converged")
"""Completeness figures written by :class:`~medig.monai.ComputeIntegratedGradientsd`
(``Explanation`` fields)."""


def to_unit_range(img: Tensor) -> Tensor:
    """Scale an image as MONAI loads it to what medig's core accepts (uint8, or float in [0, 1]).

    The rule: uint8, or a maximum above 1, means 0-255 (``LoadImage`` returns 8-bit photographs as
    float32 0-255), and is brought to [0, 1] by dividing by 255; floats within [0, 1] are kept.
    Whole-valued 0-255 data (any dtype) is returned as uint8, which is lossless and lets the core
    take its uint8 path: the result is then bit-identical to ``medig audit`` on the same file (the
    core divides by 255 after its antialiased resize). Values above 255 or below 0 (16-bit PNG or
    DICOM) raise: rescale first (``monai.transforms.ScaleIntensityRange``), medig cannot guess the range.
    """
    if img.dtype == torch.uint8:
        return img
    top = float(img.max()) if img.numel() else 0.0
    if top > 255.0 or (img.numel() and float(img.min()) < 0.0):
        raise ValueError(
            f"pixel values must be within 0-255 (8-bit) or [0, 1], got [{float(img.min())}, {top}]:"
            " rescale first, e.g. with monai.transforms.ScaleIntensityRange")
    if not img.is_floating_point() or (top > 1.0 and bool((img == img.round()).all())):
        return img.to(torch.uint8)
    img = img.float()
    return img / 255.0 if top > 1.0 else img


class PreprocessFundus(Transform):
    """MONAI transform: FOV mask, square crop on the disk, resize and optional Graham normalisation.

    Wraps :class:`medig.preprocess.FundusPreprocess` (same parameters, same numbers) for ONE
    channel-first fundus photograph ``(C, H, W)`` as MONAI loads it (``LoadImage`` +
    ``EnsureChannelFirst``). Pixel values are scaled by :func:`to_unit_range` (uint8, or max > 1:
    divided by 255). ``C`` is 3 (RGB), 1 (grey, repeated) or 4 (RGBA: alpha dropped).

    The output is a float32 ``(3, size, size)`` image in [0, 1] with the input's metadata kept and
    updated: ``spatial_shape``, ``affine`` (composed with the crop, resize and any axis swap, so world
    coordinates of a pixel are preserved) and ``medig_fov_box`` (``x0, y0, x1, y1`` of the crop in the
    original ``(H, W)`` pixel coordinates, float64 tensor).

    Parameters
    ----------
    size, crop, graham, margin, graham_sigma :
        As :class:`medig.preprocess.FundusPreprocess` (output side, crop on the FOV disk, Graham's
        normalisation, border around the disk, Graham blur sigma).
    reverse_indexing : bool
        Set True when the image's spatial axes are ``(W, H)``: MONAI's ``PILReader`` (the default
        reader for JPEG/PNG/TIFF) and ``PydicomReader`` (``swap_ij=True``) return them so by default.
        The image is then transposed to ``(H, W)`` first, so the output is the photograph as displayed
        (rows top to bottom), exactly what :func:`medig.io.read_image` gives and what medig's models
        and overlays expect. Alternatively load with ``PILReader(reverse_indexing=False)``.
    return_mask : bool
        Also return the boolean FOV mask ``(1, size, size)`` (same metadata), like
        ``monai.transforms.CropForeground(return_coords=True)``.

    Examples
    --------
    >>> from monai.transforms import Compose, EnsureChannelFirst, LoadImage
    >>> pre = Compose([LoadImage(image_only=True), EnsureChannelFirst(),
    ...                PreprocessFundus(size=256, reverse_indexing=True)])  # doctest: +SKIP
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        size: int = 512,
        crop: bool = True,
        graham: bool = False,
        margin: float = 0.03,
        reverse_indexing: bool = False,
        return_mask: bool = False,
        graham_sigma: float | None = None,
    ) -> None:
        self.preprocess = _CorePreprocess(size=size, crop=crop, graham=graham, margin=margin,
                                          graham_sigma=graham_sigma)
        self.reverse_indexing = reverse_indexing
        self.return_mask = return_mask

    def __call__(
        self, img: NdarrayOrTensor, reverse_indexing: bool | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Preprocess one ``(C, H, W)`` image (``(C, W, H)`` with ``reverse_indexing``).

        Returns
        -------
        Tensor or (Tensor, Tensor)
            The image (and the FOV mask when ``return_mask``), MetaTensors when the input is one.
        """
        reverse = self.reverse_indexing if reverse_indexing is None else reverse_indexing
        img_t = convert_to_tensor(img, track_meta=isinstance(img, MetaTensor))
        if img_t.ndim != 3:
            raise ValueError(f"expected one channel-first image (C, H, W), got shape "
                             f"{tuple(img_t.shape)}; add EnsureChannelFirst before this transform")
        x = plain(img_t)
        if reverse:
            x = x.transpose(1, 2)
        if x.shape[0] == 4:
            x = x[:3]  # RGBA PNG: the alpha plane is not part of the photograph
        x = to_unit_range(x)
        out, mask, boxes = self.preprocess.forward_with_boxes(x[None])
        size = self.preprocess.size
        updates: dict[str, Any] = {
            "spatial_shape": torch.tensor([size, size]),
            FOV_BOX_KEY: boxes[0].detach().to("cpu", torch.float64),
        }
        if isinstance(img_t, MetaTensor):
            affine = img_t.affine.to(torch.float64).cpu()
            index_map = crop_resize_index_map(boxes[0], size, reverse, affine.shape[-1])
            updates["affine"] = affine @ index_map
        image = with_meta(out[0], img_t, updates)
        if not self.return_mask:
            return image
        return image, with_meta(mask[0], img_t, updates)


@contextlib.contextmanager
def eval_mode_of(module: Any) -> Iterator[None]:
    """Put an ``nn.Module`` in eval mode for the duration and restore its modes after.

    IG integrates one fixed function: dropout or batch statistics would change F along the path and
    break completeness. MONAI engines switch to eval only around their own forward pass, so every
    medig adapter does it around the attribution (without ``no_grad``: gradients are needed).
    """
    if not isinstance(module, nn.Module):
        yield
        return
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def explanation_stats(explanation: Explanation, squeeze: bool = False) -> dict[str, Tensor]:
    """The completeness figures of an :class:`~medig.Explanation` as a dict of CPU tensors.

    Parameters
    ----------
    explanation : Explanation
        The core result.
    squeeze : bool
        Return 0-d tensors (one image) instead of ``(N,)`` ones, so that ``DataLoader`` collation
        stacks them into ``(N,)`` again.

    Returns
    -------
    dict
        ``target``, ``score``, ``baseline_score``, ``delta``, ``relative_error``, ``map_error``
        (estimated relative L2 error of the map), ``n_steps``, ``converged`` (see
        :data:`STATS_FIELDS`).
    """
    stats = {}
    for name in STATS_FIELDS:
        value = getattr(explanation, name)
        value = torch.as_tensor(value).detach().cpu() if value is not None else torch.zeros(0)
        stats[name] = value[0] if squeeze and value.ndim else value
    return stats


class ComputeIntegratedGradients(Transform):
    """MONAI transform: Integrated Gradients attributions of a classifier for an image or a batch.

    A thin adapter over :meth:`medig.FundusIntegratedGradients.explain` (adaptive steps until the
    completeness tolerance holds, fundus baselines, input-only gradients, works under
    ``torch.no_grad()``). ``__call__`` returns the attributions, same shape and metadata as the input;
    :meth:`explain` returns the full :class:`~medig.Explanation` (completeness figures included).

    Parameters
    ----------
    nn_module : nn.Module
        Classifier taking pixel-space RGB in [0, 1] (fold normalisation in with
        :func:`medig.with_normalization`); evaluated in eval mode, its modes restored after.
    baselines : baseline spec
        ``"black"`` (default), ``"blur"``, ``"fov_mean"``, a ``ReferenceSet``, a list (averaged), ...
        (see :mod:`medig.baselines`).
    target : int or None
        Class explained; None: the predicted class of each image.
    completeness_tol, max_steps, method, internal_batch_size :
        As :meth:`medig.FundusIntegratedGradients.explain`.
    device : str or torch.device, optional
        Where to compute (default: the input's device); results come back on the input's device.
        In ``DataLoader`` workers keep it on the CPU, or apply the dictionary form to collated
        batches in the main process (e.g. as a post-transform) to use a GPU.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        nn_module: nn.Module,
        baselines: BaselineSpec = "black",
        target: int | None = None,
        completeness_tol: float | None = 0.01,
        max_steps: int = 512,
        method: Literal["adaptive"] | str = "adaptive",
        internal_batch_size: int | Literal["auto"] | None = "auto",
        device: str | torch.device | None = None,
    ) -> None:
        self.nn_module = nn_module
        self.explainer = FundusIntegratedGradients(nn_module, baselines=baselines)
        self.target = target
        self.completeness_tol = completeness_tol
        self.max_steps = max_steps
        self.method = method
        self.internal_batch_size = internal_batch_size
        self.device = device

    def explain(
        self, img: NdarrayOrTensor, target: int | Sequence[int] | Tensor | None = None
    ) -> Explanation:
        """Run the core :meth:`~medig.FundusIntegratedGradients.explain` on ``(C, H, W)`` or ``(N, C, H, W)``.

        The returned :class:`~medig.Explanation` is always batched (``N = 1`` for a single image)
        and lives on the compute device. ``target`` overrides the constructor's for this call.
        """
        batch = self._batch(img)
        tgt = self.target if target is None else target
        if isinstance(tgt, Tensor):
            tgt = tgt.reshape(-1).to(batch.device)
        with eval_mode_of(self.nn_module):
            return self.explainer.explain(
                batch, target=tgt, completeness_tol=self.completeness_tol,
                max_steps=self.max_steps, method=self.method,
                internal_batch_size=self.internal_batch_size)

    def _batch(self, img: NdarrayOrTensor) -> Tensor:
        """``img`` as the float ``(N, C, H, W)`` batch on the compute device that is explained."""
        x = plain(convert_to_tensor(img))
        if x.ndim not in (3, 4):
            raise ValueError(f"expected (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
        batch = x if x.ndim == 4 else x[None]
        if self.device is not None:
            batch = batch.to(self.device)
        if not batch.is_floating_point():
            batch = to_unit_range(batch).float()
        return batch

    def checks(self, img: NdarrayOrTensor, explanation: Explanation,
               fov: NdarrayOrTensor | None = None) -> dict[str, Tensor]:
        """The per-image trust checks of ``explanation`` (:func:`medig.checks.image_checks`):
        ``baseline_agreement`` and ``baseline_topk_overlap`` (two or more baselines),
        ``faithfulness``, ``deletion_auc`` and ``random_deletion_auc``, as ``(N,)`` CPU tensors.

        ``fov`` is the boolean field of view (``(1, H, W)`` or ``(N, 1, H, W)``, e.g.
        :class:`PreprocessFundusd`'s mask); None uses every pixel.
        """
        from medig.checks import image_checks

        batch = self._batch(img)
        mask = None
        if fov is not None:
            mask = plain(convert_to_tensor(fov)).bool().to(batch.device)
            mask = mask if mask.ndim == 4 else mask[None]
        with eval_mode_of(self.nn_module):
            return image_checks(self.explainer.forward_func, batch, explanation, mask)

    def attributions_like(self, explanation: Explanation, img: NdarrayOrTensor) -> Tensor:
        """Attributions of ``explanation`` with ``img``'s shape (batch dim or not), device and metadata."""
        attr = explanation.attributions
        like = convert_to_tensor(img, track_meta=isinstance(img, MetaTensor))
        if like.ndim == 3:
            attr = attr[0]
        return with_meta(attr.detach().to(like.device), like)

    def __call__(
        self, img: NdarrayOrTensor, target: int | Sequence[int] | Tensor | None = None
    ) -> Tensor:
        """Attributions for ``img`` (``(C, H, W)`` or ``(N, C, H, W)``), same shape and metadata."""
        return self.attributions_like(self.explain(img, target), img)


def __getattr__(name: str) -> object:
    return renamed_attribute(__name__, _RENAMED, globals(), name)
