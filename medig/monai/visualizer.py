# SPDX-License-Identifier: Apache-2.0
"""``IntegratedGradientsVisualizer``: IG in the calling style of ``monai.visualize.GradCAM``."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from medig.attr import Explanation
from medig.baselines import BaselineSpec
from medig.monai.array import ComputeIntegratedGradients
from medig.visualize import attribution_map

__all__ = ["IntegratedGradientsVisualizer", "minmax_normalizer"]


def minmax_normalizer(x: Tensor) -> Tensor:
    """Scale each map of an ``(N, 1, H, W)`` batch linearly so its minimum is 0 and maximum 1.

    Unlike MONAI's CAM ``default_normalizer`` (which maps (min, max) to (1, 0) for its colour maps)
    the order is kept: high values are evidence *for* the class. A constant map becomes zeros.
    """
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(dim=1).values.view(-1, *([1] * (x.ndim - 1)))
    hi = flat.max(dim=1).values.view(-1, *([1] * (x.ndim - 1)))
    span = hi - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, 1), torch.zeros_like(x))


class IntegratedGradientsVisualizer:
    """Integrated Gradients saliency maps for MONAI users, called like ``monai.visualize.GradCAM``.

    Built once per model and called per batch: ``ig(x, class_idx=None)`` returns an ``(N, 1, H, W)``
    map, the attributions summed over colour channels (:func:`medig.visualize.attribution_map`),
    then ``postprocessing``; pass it to ``monai.visualize.blend_images`` or ``matshow3d``. Unlike
    CAMs, no target layer is needed and the map is at input resolution. Attributions come from
    :meth:`medig.FundusIntegratedGradients.explain`, whose completeness figures stay available as
    :attr:`last_explanation` (or call :meth:`explain`). Works inside ``torch.no_grad()``.

    Parameters
    ----------
    nn_module : nn.Module
        Classifier on pixel-space RGB in [0, 1] (evaluated in eval mode, modes restored after).
    baselines : baseline spec
        As :class:`medig.FundusIntegratedGradients` (default ``"black"``).
    completeness_tol, max_steps, method, internal_batch_size :
        As :meth:`medig.FundusIntegratedGradients.explain`.
    postprocessing : callable or None
        Applied to the ``(N, 1, H, W)`` map; default :func:`minmax_normalizer` (per-image [0, 1], as
        GradCAM's maps). None returns the raw signed map, which still sums to ``F(x) - F(x')``
        per image (use it with :mod:`medig.visualize` for the green/red convention and a cohort
        scale).

    Examples
    --------
    >>> ig = IntegratedGradientsVisualizer(model, baselines="blur")  # doctest: +SKIP
    >>> heat = ig(images)                                            # (N, 1, H, W) in [0, 1]
    >>> ig.last_explanation.relative_error                           # completeness per image
    >>> blended = monai.visualize.blend_images(images[0], heat[0], cmap="jet")
    """

    def __init__(
        self,
        nn_module: nn.Module,
        baselines: BaselineSpec = "black",
        completeness_tol: float | None = 0.01,
        max_steps: int = 512,
        method: Literal["adaptive"] | str = "adaptive",
        internal_batch_size: int | Literal["auto"] | None = "auto",
        postprocessing: Callable[[Tensor], Tensor] | None = minmax_normalizer,
    ) -> None:
        self.nn_module = nn_module
        self.ig = ComputeIntegratedGradients(nn_module, baselines=baselines,
                                             completeness_tol=completeness_tol,
                                             max_steps=max_steps, method=method,
                                             internal_batch_size=internal_batch_size)
        self.postprocessing = postprocessing
        self.last_explanation: Explanation | None = None

    def explain(self, x: Tensor, class_idx: int | Sequence[int] | Tensor | None = None,
                **kwargs: Any) -> Explanation:
        """The full :class:`~medig.Explanation` for ``x`` (``(N, C, H, W)``); also kept as
        :attr:`last_explanation`. ``kwargs`` override the constructor's ``baselines``,
        ``completeness_tol``, ``max_steps``, ``method`` or ``internal_batch_size`` for this call.
        """
        if x.ndim != 4:
            raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(x.shape)}")
        unknown = set(kwargs) - {"baselines", "completeness_tol", "max_steps", "method",
                                 "internal_batch_size"}
        if unknown:
            raise TypeError(f"unexpected keyword arguments: {sorted(unknown)}")
        baselines = kwargs.pop("baselines", None)
        ig = self.ig
        if kwargs or baselines is not None:
            ig = ComputeIntegratedGradients(
                self.nn_module,
                baselines=self.ig.explainer.baselines if baselines is None else baselines,
                **{name: kwargs.get(name, getattr(self.ig, name))
                   for name in ("completeness_tol", "max_steps", "method", "internal_batch_size")})
        self.last_explanation = ig.explain(x, class_idx)
        return self.last_explanation

    def __call__(self, x: Tensor, class_idx: int | Sequence[int] | Tensor | None = None,
                 **kwargs: Any) -> Tensor:
        """Channel-summed (and post-processed) IG map ``(N, 1, H, W)`` for the batch ``x``.

        Parameters
        ----------
        x : Tensor
            ``(N, C, H, W)`` images in [0, 1].
        class_idx : int, sequence or Tensor, optional
            Class to explain per image; None: the predicted class (as GradCAM).
        **kwargs :
            Per-call overrides of the explanation options (see :meth:`explain`).
        """
        explanation = self.explain(x, class_idx, **kwargs)
        amap = attribution_map(explanation.attributions.detach())
        if self.postprocessing is not None:
            amap = self.postprocessing(amap)
        return amap.to(x.device)
