# SPDX-License-Identifier: Apache-2.0
"""Dictionary transforms: :mod:`medig.monai.array` over the ``keys`` of a data dictionary.

Written keys follow MONAI's ``f"{key}_{postfix}"`` habit (``CropForegroundd``'s
``start_coord_key``, ``FgBgToIndicesd``'s ``fg_postfix``): for ``keys="image"`` the defaults are
``image_fov_mask`` (FOV mask), ``image_ig`` (attributions) and ``image_ig_stats`` (completeness
figures); pass explicit names, one per key, to choose others.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep
from torch import Tensor, nn

from medig._deprecation import renamed_attribute
from medig.baselines import BaselineSpec
from medig.monai.array import ComputeIntegratedGradients, PreprocessFundus, explanation_stats

__all__ = [
    "ComputeIntegratedGradientsD",
    "ComputeIntegratedGradientsDict",
    "ComputeIntegratedGradientsd",
    "PreprocessFundusD",
    "PreprocessFundusDict",
    "PreprocessFundusd",
]

#: Former names, served with a DeprecationWarning until the next release.
_RENAMED = {
    **{f"FundusPreprocess{s}": "PreprocessFundusd" for s in ("d", "D", "Dict")},
    **{f"IntegratedGradients{s}": "ComputeIntegratedGradientsd" for s in ("d", "D", "Dict")},
}


def _names(given: KeysCollection | None, keys: tuple[Hashable, ...], postfix: str) -> tuple:
    if given is None:
        return tuple(f"{k}_{postfix}" for k in keys)
    names = ensure_tuple_rep(given, len(keys))
    if len(set(names)) != len(names):
        raise ValueError(f"one output key per input key is needed, got {names} for {keys}")
    return names


class PreprocessFundusd(MapTransform):
    """Dictionary form of :class:`medig.monai.PreprocessFundus`.

    Each image under ``keys`` is replaced by its preprocessed ``(3, size, size)`` version and its
    boolean FOV mask ``(1, size, size)`` is written under the matching ``mask_keys`` entry (default
    ``f"{key}_fov_mask"``), both MetaTensors carrying the updated metadata.

    Parameters
    ----------
    keys : KeysCollection
        Keys of the images (channel-first, as ``LoadImaged`` + ``EnsureChannelFirstd`` give).
    size, crop, graham, margin, reverse_indexing, graham_sigma :
        As :class:`medig.monai.PreprocessFundus` (``reverse_indexing=True`` for images loaded with
        MONAI's ``PILReader``/``PydicomReader`` defaults, whose spatial axes are ``(W, H)``).
    mask_keys : str or sequence of str, optional
        Where to write the FOV masks, one per key; default ``f"{key}_fov_mask"``.
    allow_missing_keys : bool
        Skip keys absent from the data instead of raising.
    """

    backend = PreprocessFundus.backend

    def __init__(
        self,
        keys: KeysCollection,
        size: int = 512,
        crop: bool = True,
        graham: bool = False,
        margin: float = 0.03,
        reverse_indexing: bool = False,
        mask_keys: KeysCollection | None = None,
        allow_missing_keys: bool = False,
        graham_sigma: float | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.preprocess = PreprocessFundus(size=size, crop=crop, graham=graham, margin=margin,
                                           reverse_indexing=reverse_indexing, return_mask=True,
                                           graham_sigma=graham_sigma)
        self.mask_keys = _names(mask_keys, self.keys, "fov_mask")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, mask_key in self.key_iterator(d, self.mask_keys):
            d[key], d[mask_key] = self.preprocess(d[key])
        return d


class ComputeIntegratedGradientsd(MapTransform):
    """Dictionary form of :class:`medig.monai.ComputeIntegratedGradients`.

    Works on one sample (``(C, H, W)`` images, e.g. inside a ``Dataset``'s transform) and on a
    collated batch (``(N, C, H, W)``, e.g. applied to a ``DataLoader`` batch or as an engine's
    post-transform before decollation). For each key it writes:

    - ``attribution_keys`` (default ``f"{key}_ig"``): attributions, same shape and metadata as the image;
    - ``stats_keys`` (default ``f"{key}_ig_stats"``): a dict of the completeness figures ``target``,
      ``score`` (F(x)), ``baseline_score`` (F(x')), ``delta``, ``relative_error``, ``map_error``, ``n_steps``,
      ``converged``: 0-d tensors for a sample (collation stacks them), ``(N,)`` for a batch; with
      ``trust_checks`` also the per-image checks of :func:`medig.checks.image_checks`
      (``faithfulness``, ``deletion_auc``, ``random_deletion_auc``, and ``baseline_agreement``,
      ``baseline_topk_overlap`` with two or more baselines; NaN where not measurable).

    Parameters
    ----------
    keys : KeysCollection
        Image keys (pixel-space RGB in [0, 1], e.g. the output of :class:`PreprocessFundusd`).
    nn_module, baselines, target, completeness_tol, max_steps, method, internal_batch_size, device :
        As :class:`medig.monai.ComputeIntegratedGradients`.
    target_key : str, optional
        Take the class to explain from ``data[target_key]`` (class index per image, e.g. the
        ``"label"``) instead of ``target``.
    attribution_keys, stats_keys : str or sequence of str, optional
        Output keys, one per key.
    trust_checks : bool
        Add the per-image trust checks to the stats (forward passes: about 40 per image).
    mask_keys : str or sequence of str, optional
        Field-of-view masks used by the checks, one per key (default ``f"{key}_fov_mask"``, as
        :class:`PreprocessFundusd` writes; every pixel when the data has no such key).
    allow_missing_keys : bool
        Skip keys absent from the data instead of raising.
    """

    backend = ComputeIntegratedGradients.backend

    def __init__(
        self,
        keys: KeysCollection,
        nn_module: nn.Module,
        baselines: BaselineSpec = "black",
        target: int | None = None,
        completeness_tol: float | None = 0.01,
        max_steps: int = 512,
        method: Literal["adaptive"] | str = "adaptive",
        internal_batch_size: int | Literal["auto"] | None = "auto",
        target_key: str | None = None,
        attribution_keys: KeysCollection | None = None,
        stats_keys: KeysCollection | None = None,
        device: str | torch.device | None = None,
        allow_missing_keys: bool = False,
        trust_checks: bool = True,
        mask_keys: KeysCollection | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.trust_checks = trust_checks
        self.mask_keys = _names(mask_keys, self.keys, "fov_mask")
        self.ig = ComputeIntegratedGradients(
            nn_module, baselines=baselines, target=target, completeness_tol=completeness_tol,
            max_steps=max_steps, method=method, internal_batch_size=internal_batch_size,
            device=device)
        self.target_key = target_key
        self.attribution_keys = _names(attribution_keys, self.keys, "ig")
        self.stats_keys = _names(stats_keys, self.keys, "ig_stats")

    def _target(self, d: Mapping[Hashable, Any]) -> int | Sequence[int] | Tensor | None:
        if self.target_key is None:
            return None
        value = d[self.target_key]
        return torch.as_tensor(value).long().reshape(-1)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, attr_key, stats_key, mask_key in self.key_iterator(
                d, self.attribution_keys, self.stats_keys, self.mask_keys):
            img = d[key]
            explanation = self.ig.explain(img, self._target(d))
            d[attr_key] = self.ig.attributions_like(explanation, img)
            stats = explanation_stats(explanation, squeeze=img.ndim == 3)
            if self.trust_checks:
                checks = self.ig.checks(img, explanation, d.get(mask_key))
                stats.update({k: v[0] if img.ndim == 3 else v for k, v in checks.items()})
            d[stats_key] = stats
        return d


PreprocessFundusD = PreprocessFundusDict = PreprocessFundusd
ComputeIntegratedGradientsD = ComputeIntegratedGradientsDict = ComputeIntegratedGradientsd


def __getattr__(name: str) -> object:
    return renamed_attribute(__name__, _RENAMED, globals(), name)
