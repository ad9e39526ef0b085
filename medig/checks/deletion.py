# SPDX-License-Identifier: Apache-2.0
"""Faithfulness by deletion: does the output fall fastest when the pixels the map ranks highest go?

The deletion curve (Petsiuk et al. 2018, RISE; Samek et al. 2017's "pixel flipping") removes the
field-of-view pixels in order of decreasing attribution toward the explained output, in ``steps``
equal parts, and records the explained output after each part. A faithful map puts the pixels
the model relies on first, so its curve drops faster than the curve of a random removal order.

**Fill.** Removed pixels are replaced by the same image blurred with medig's ``blur`` baseline
(Gaussian, sigma = 1/16 of the image side), not by black: black creates sharp, out-of-distribution
edges around every removed pixel, which a CNN reacts to whatever the map says, and Rong et al.
(ROAD, 2022) showed that such leakage can reverse the ranking of attribution methods. ROAD's
remedy, noisy linear imputation from the neighbours, needs a sparse linear solve per removal
pattern (``(1 + random_orders) x steps`` solves of one unknown per removed pixel, per image), too
costly for a check that runs on every image of every audit. The blurred image is smooth at every
removal pattern, keeps the retina's colour and vignetting (the model sees a retina without fine
detail rather than holes), and is what IG's ``blur`` baseline integrates from: removing everything
reaches, inside the field of view, the reference image of the audit's default explanation. Any
baseline name, number, tensor or callable may be passed as ``fill`` instead.

**Patches.** Pixels go in square patches (default 1/64 of the image side: 4 px at 256 px), ranked
by the attribution they hold, and the random orders shuffle the same patches. Removing single
pixels at random scatters thousands of one-pixel holes over every lesion, a pattern unlike the
compact regions a map's order removes, and the model reacts to the pattern itself; with patches
both orders leave holes of the same shape. On the demo model (``bench/trust.py``) single pixels
put only 78% of the referable images' maps ahead of random removal, 4-px patches 98%.

**Random orders.** ``random_orders`` uniformly random orders, drawn from generators seeded with
``seed`` (one pattern per image size, broadcast over the batch, like the noise baselines, so an
image gets the same orders whatever batch it is in), averaged. Ties in the map are broken in a
fixed random order too, not by position.

**Normalisation.** With ``auc`` the area under the map's curve and ``random_auc`` under the
averaged random curve (fraction removed on the x axis, from 0 to 1), ::

    faithfulness = (random_auc - auc) / span,

where ``span`` is the range (max - min) of the recorded output over both curves. It is positive
when removal in the map's order lowers the output sooner than chance, 0 when the map ranks pixels
no better than chance, negative when worse; it lies in [-1, 1] and does not depend on the output's
units. It is NaN when the output does not move at all.

**Output.** The curve records whatever ``forward_func`` returns for ``target``. Audits explaining
the class probability record its log-odds (:func:`faithfulness_output`): the same order, but a
probability saturated at 1.000 stays flat while most lesions are removed (on the demo model, 15% of
the referable images' curves were flat at every step but the last).

Every removal pattern of every image goes through the model in a few large forward passes under
``torch.no_grad`` (``2 + (steps - 1) x (1 + random_orders)`` rows per image: no removal and full
removal are shared by all orders).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from medig.attr.chunking import auto_chunk_size, run_chunked
from medig.checks._grid import FovArg, cell_grid, channel_map, fov_or_all, resolve_fov

__all__ = ["DeletionResult", "LogOdds", "deletion_curve", "faithfulness_output", "make_fill",
           "select_output"]


class LogOdds(nn.Module):
    """``log(p / (1 - p))`` of every class's softmax probability, computed from the logits.

    The same ordering as the probability (a monotone transform of it), without its saturation:
    a referable image at p = 0.99999 stays at p = 1.000 in float32 while most of its lesions are
    removed, so a deletion curve of the probability is flat until the last step whatever the
    order, while the log-odds keep falling. For a single-logit model the logit is returned.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        z = self.model(x).double()
        if z.ndim != 2 or z.shape[1] == 1:
            return z
        k = z.shape[1]
        own = torch.eye(k, dtype=torch.bool, device=z.device)
        others = z[:, None, :].expand(-1, k, -1).masked_fill(own, -math.inf).logsumexp(dim=-1)
        return z - others


def faithfulness_output(model: nn.Module, output: str = "probability") -> nn.Module:
    """The output the deletion and occlusion checks record for an audit explaining ``output``:
    the log-odds of the class probability (:class:`LogOdds`) or the logit itself."""
    if output not in ("probability", "logit"):
        raise ValueError(f"output must be 'probability' or 'logit', got {output!r}")
    return LogOdds(model) if output == "probability" else model


@dataclass
class DeletionResult:
    """Deletion curves of a batch (see :func:`deletion_curve`).

    Attributes
    ----------
    fractions : Tensor
        ``(steps + 1,)`` share of the field of view removed at each point, 0 to 1.
    curve : Tensor
        ``(N, steps + 1)`` explained output with pixels removed in the map's order.
    random_curve : Tensor
        ``(N, steps + 1)`` the same for random orders, averaged over the orders.
    auc, random_auc : Tensor
        ``(N,)`` areas under the two curves (trapezoid rule, x from 0 to 1).
    faithfulness : Tensor
        ``(N,)`` ``(random_auc - auc) / span`` (see the module docstring); > 0: better than chance.
    fill : str
        What removed pixels were replaced with.
    random_orders : int
        Number of random orders averaged.
    patch : int
        Side of the removed patches in pixels.
    """

    fractions: Tensor
    curve: Tensor
    random_curve: Tensor
    auc: Tensor
    random_auc: Tensor
    faithfulness: Tensor
    fill: str
    random_orders: int
    patch: int = 1


def make_fill(fill: str | float | Tensor | Callable[[Tensor], Tensor], inputs: Tensor) -> Tensor:
    """The replacement image for ``inputs``: a baseline name, a number, a tensor or a callable."""
    from medig.baselines import get_baseline

    if isinstance(fill, str):
        value = get_baseline(fill)(inputs)
    elif isinstance(fill, (int, float)) and not isinstance(fill, bool):
        value = torch.full_like(inputs, float(fill))
    elif isinstance(fill, Tensor):
        value = fill
    elif callable(fill):
        value = fill(inputs)
    else:
        raise TypeError(f"unsupported fill: {type(fill).__name__}")
    return value.to(device=inputs.device, dtype=inputs.dtype).expand_as(inputs)


def select_output(outputs: Tensor, target: Tensor | None) -> Tensor:
    """``(N,)`` explained output: column ``target[i]`` of row ``i`` (the only column when None)."""
    flat = outputs.reshape(outputs.shape[0], -1)
    if target is None:
        return flat[:, 0]
    return flat.gather(1, target.view(-1, 1).to(flat.device))[:, 0]


def _target_tensor(target: Any, n: int, device: torch.device) -> Tensor | None:
    if target is None:
        return None
    t = torch.as_tensor(target, dtype=torch.long, device=device).reshape(-1)
    return t.expand(n).clone() if t.numel() == 1 else t


def _removal_ranks(keys: Tensor, inside: Tensor, shuffle: Tensor) -> Tensor:
    """Rank of each pixel in removal order (0 first); pixels outside the FOV come last.

    Ties (e.g. the zeros of a sparse map) are broken in the fixed random order ``shuffle``, not
    by position, which would remove the top of the image first.
    """
    keys = keys.masked_fill(~inside, -math.inf)[:, shuffle]
    order = shuffle[keys.argsort(dim=1, descending=True, stable=True)]
    ranks = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return ranks.scatter_(1, order, positions)


def _random_keys(k: int, seed: int, pixels: int, device: torch.device) -> Tensor:
    # One pattern per image size from a CPU generator: the same on every device and batch.
    generator = torch.Generator().manual_seed(int(seed) * 7919 + k)
    return torch.rand(pixels, generator=generator, dtype=torch.float64).to(device)


#: The default patch is ``1 / PATCH_FRACTION_INV`` of the shorter image side.
PATCH_FRACTION_INV = 64


def default_patch(height: int, width: int) -> int:
    """Default removal patch: 1/64 of the shorter image side (4 px at 256 px), at least 1."""
    return max(1, round(min(height, width) / PATCH_FRACTION_INV))


def deletion_curve(
    forward_func: Callable[[Tensor], Tensor],
    inputs: Tensor,
    attributions: Tensor,
    target: int | list[int] | Tensor | None,
    fov: FovArg = "auto",
    steps: int = 10,
    fill: str | float | Tensor | Callable[[Tensor], Tensor] = "blur",
    random_orders: int = 3,
    seed: int = 0,
    internal_batch_size: int | Literal["auto"] = "auto",
    patch: int | None = None,
) -> DeletionResult:
    """Deletion curve of the map's order against random orders, batched, forward passes only.

    Parameters
    ----------
    forward_func : callable
        The output recorded, ``(N, C, H, W) -> (N, K)`` (or ``(N,)``): the explained output, or
        for a softmax probability its log-odds (:func:`faithfulness_output`), as audits do.
    inputs : Tensor
        ``(N, C, H, W)`` images.
    attributions : Tensor
        ``(N, C, H, W)`` attributions (summed over channels) or ``(N, H, W)`` maps; pixels are
        removed from the most positive (strongest evidence for the output) down.
    target : int, list, Tensor or None
        Output index per image (None for a single output).
    fov : Tensor, "auto" or None
        Bool field of view ``(N, 1, H, W)``; only its pixels are removed. ``"auto"`` (default):
        detected on ``inputs`` by :func:`medig.preprocess.fov_mask`, as the audit does, so that
        the black surround of a fundus photograph is not "removed"; None: every pixel (the
        default before ``"auto"``).
    steps : int
        Equal parts the field of view is removed in (the curve has ``steps + 1`` points).
    fill : str, float, Tensor or callable
        Replacement of removed pixels (default ``"blur"``, see the module docstring).
    random_orders : int
        Random removal orders averaged for the reference curve (>= 1).
    seed : int
        Seed of the random orders.
    internal_batch_size : int or "auto"
        Images per forward pass (``"auto"``: as the attribution's chunks; halved on
        out-of-memory).
    patch : int, optional
        Side in pixels of the square patches removed at once (1: single pixels). Default
        ``max(1, round(min(H, W) / 64))``: 4 px at 256 px, 8 px at 512 px (see the module
        docstring).

    Returns
    -------
    DeletionResult
    """
    if not isinstance(inputs, Tensor) or inputs.ndim != 4:
        raise ValueError("deletion_curve expects a batched input tensor (N, C, H, W)")
    if steps < 1 or random_orders < 1:
        raise ValueError(f"steps and random_orders must be >= 1, got {steps} and {random_orders}")
    n, _, h, w = inputs.shape
    device = inputs.device
    inputs = inputs.detach()
    amap = channel_map(attributions.detach().to(device)).to(torch.float64).nan_to_num(0.0)
    if tuple(amap.shape) != (n, h, w):
        raise ValueError(f"attributions of shape {tuple(attributions.shape)} do not match inputs "
                         f"{tuple(inputs.shape)}")
    inside = fov_or_all(resolve_fov(fov, inputs), amap).reshape(n, h * w)
    filler = make_fill(fill, inputs).detach()
    tgt = _target_tensor(target, n, device)

    patch = default_patch(h, w) if patch is None else int(patch)
    if patch < 1:
        raise ValueError(f"patch must be >= 1 pixel, got {patch}")
    if patch > 1:
        # Whole patches go at once, ranked by the attribution they hold; random orders shuffle
        # the same patches, so both orders leave removal patterns of the same shape.
        ph, pw = -(-h // patch), -(-w // patch)
        fov_map = inside.reshape(n, h, w)
        sums, _ = cell_grid(amap, fov_map, patch, min_cover=0.0)

        def spread(grid: Tensor) -> Tensor:
            full = grid.repeat_interleave(patch, -2).repeat_interleave(patch, -1)
            return full[..., :h, :w].reshape(grid.shape[0], h * w)

        keys = [spread(sums)] + [spread(_random_keys(k, seed, ph * pw, device).view(1, ph, pw)
                                        ).expand(n, -1) for k in range(random_orders)]
    else:
        keys = [amap.reshape(n, h * w)] + [_random_keys(k, seed, h * w, device).expand(n, -1)
                                           for k in range(random_orders)]
    shuffle = _random_keys(-1, seed, h * w, device).argsort()
    ranks = [_removal_ranks(key, inside, shuffle) for key in keys]
    count = inside.sum(dim=1)
    # Pixels removed after step k: round(k / steps * count), per image.
    removed = [torch.div(k * count + steps // 2, steps, rounding_mode="floor")
               for k in range(steps + 1)]
    # Rows per image: no removal, (order, k) for 0 < k < steps, full removal.
    variants: list[tuple[int | None, int]] = [(None, 0)]
    variants += [(o, k) for o in range(len(keys)) for k in range(1, steps)]
    variants.append((None, steps))
    fov_flat = inside.reshape(n, 1, h, w)

    def rows(start: int, stop: int) -> Tensor:
        parts = []
        for v in range(start // n, (stop - 1) // n + 1):
            lo, hi = max(start - v * n, 0), min(stop - v * n, n)
            order, k = variants[v]
            if order is None:
                mask = fov_flat[lo:hi] if k == steps else torch.zeros_like(fov_flat[lo:hi])
            else:
                mask = (ranks[order][lo:hi] < removed[k][lo:hi, None]).reshape(hi - lo, 1, h, w)
            parts.append(torch.where(mask, filler[lo:hi], inputs[lo:hi]))
        return torch.cat(parts)

    def scores(start: int, stop: int) -> Tensor:
        index = torch.arange(start, stop, device=device) % n
        batch = rows(start, stop)
        if inputs.is_contiguous(memory_format=torch.channels_last):
            batch = batch.contiguous(memory_format=torch.channels_last)
        out = forward_func(batch)
        return select_output(out, None if tgt is None else tgt[index]).to(torch.float64)

    chunk = auto_chunk_size(inputs) if internal_batch_size == "auto" else int(internal_batch_size)
    if chunk < 1:
        raise ValueError("internal_batch_size must be >= 1 or 'auto'")
    with torch.no_grad():
        parts, _ = run_chunked(len(variants) * n, chunk, scores)
    values = torch.cat(parts).reshape(len(variants), n)

    first, last = values[0], values[-1]
    middle = values[1:-1].reshape(len(keys), steps - 1, n)
    curves = torch.stack([torch.cat([first[None], middle[o], last[None]]).T
                          for o in range(len(keys))])  # (orders, N, steps + 1)
    curve, random_curve = curves[0], curves[1:].mean(dim=0)
    auc = torch.trapezoid(curve, dx=1.0 / steps, dim=1)
    random_auc = torch.trapezoid(random_curve, dx=1.0 / steps, dim=1)
    both = torch.cat([curve, random_curve], dim=1)
    span = both.max(dim=1).values - both.min(dim=1).values
    faithfulness = ((random_auc - auc) / span).masked_fill(span <= 0, math.nan)
    return DeletionResult(
        fractions=torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64),
        curve=curve, random_curve=random_curve, auc=auc, random_auc=random_auc,
        faithfulness=faithfulness,
        fill=fill if isinstance(fill, str) else type(fill).__name__,
        random_orders=random_orders, patch=patch)
