# SPDX-License-Identifier: Apache-2.0
"""Model-randomisation sanity check (Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018).

An explanation of a model must change when the model's learned weights are destroyed. Several
popular saliency methods do not: they return nearly the same map for a network with random
weights, because they mostly reproduce the image's edges. This check re-initialises the model's
layers in a cascade from the output backwards, re-explains the same images after each stage and
measures how similar the maps stay.

**Stages** (the rule, overridable with ``stages=``): wrappers with a single parameterised child
(medig's normalisation wrapper, a softmax head) are looked through; the parameterised children of
the module found are the model's top-level blocks, a ``Sequential``/``ModuleList`` among them
counting as its own parameterised children (a ResNet's ``layer4`` is several blocks). Their
reverse registration order (the forward order of standard architectures, reversed) is the
cascade: the classifier head first, then the last block, and so on; by default the first
:data:`DEFAULT_MAX_STAGES` (the head and the last three blocks). Stage ``k`` randomises its own
modules and keeps the earlier stages randomised (cascading), always on a ``copy.deepcopy`` of
the model: the caller's model is never touched. Re-initialisation uses each module's own
``reset_parameters`` (PyTorch's default initialisation, as a freshly built layer; batch-norm
statistics are reset too) under a fixed seed; parameters of modules without one are shuffled.

**Maps.** ``explain(model, inputs, target) -> attributions`` is any explainer; the default is
medig's IG with the audit's baselines and explained output, on a fixed uniform grid of ``n_steps``
segments per baseline (no completeness tolerance: the maps are only compared by rank, and the
original maps are recomputed the same way, so the comparison is like for like).

**Similarity** between the original and the randomised map of each image: the Spearman rank
correlation of ``|attribution|`` (channel-summed, pooled to cells of ``cell`` pixels inside the
field of view, as :func:`medig.checks.baseline_agreement`), and the SSIM of the same pooled maps
scaled to [0, 1] by their maxima (reported beside it). The check **passes** when the median
Spearman similarity at the last stage of the cascade is below ``threshold``
(:data:`medig.checks.thresholds.RANDOMISATION_MAX_SIMILARITY`, chosen from measurements
documented there). An explainer that ignores the model keeps similarity 1 at every stage.

Models whose layers cannot be reached (TorchScript, ``torch.export`` programs) are "not run",
with the reason, rather than failed.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from medig.checks._grid import (
    FovArg,
    cell_grid,
    channel_map,
    fov_or_all,
    resolve_fov,
    spearman,
    ssim,
)
from medig.checks.agreement import DEFAULT_CELL
from medig.checks.thresholds import RANDOMISATION_MAX_SIMILARITY

__all__ = ["DEFAULT_MAX_STAGES", "DEFAULT_SANITY_STEPS", "Explainer", "RandomisationResult",
           "ig_explainer", "map_similarity", "model_stages", "not_randomisable",
           "randomisation_test"]

#: Stages of the default cascade: the classifier head and the last three blocks.
DEFAULT_MAX_STAGES = 4
#: Segments per baseline of the default explainer's fixed IG grid (``n_steps + 1`` evaluations).
DEFAULT_SANITY_STEPS = 4

Explainer = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass
class RandomisationResult:
    """Outcome of :func:`randomisation_test`.

    Attributes
    ----------
    stages : list of str
        Names of the randomised stages, in cascade order (each includes the ones before).
    similarity : Tensor
        ``(stages, N)`` Spearman similarity of ``|attribution|`` between the original model's map
        and the map after each stage.
    ssim : Tensor
        ``(stages, N)`` SSIM of the same pooled maps.
    passed : bool or None
        Whether the median similarity at the last stage is below ``threshold``; None when the
        check could not run (see ``reason``).
    threshold : float
        The pass threshold.
    reason : str or None
        Why the check did not run, or None.
    seconds : float
        Wall time of the check.
    """

    stages: list[str]
    similarity: Tensor
    ssim: Tensor
    passed: bool | None
    threshold: float
    reason: str | None = None
    seconds: float = 0.0
    n_images: int = field(default=0)

    @property
    def ran(self) -> bool:
        return self.reason is None

    @property
    def stage_similarity(self) -> list[float]:
        """Median Spearman similarity per stage (NaN images left out)."""
        return [_nanmedian(row) for row in self.similarity]

    @property
    def stage_ssim(self) -> list[float]:
        """Median SSIM per stage."""
        return [_nanmedian(row) for row in self.ssim]


def _nanmedian(values: Tensor) -> float:
    kept = values[~torch.isnan(values)]
    return float(kept.median()) if kept.numel() else math.nan


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def not_randomisable(model: nn.Module) -> str | None:
    """Why ``model``'s layers cannot be re-initialised one by one, or None if they can."""
    if not isinstance(model, nn.Module):
        return "the model is not a torch.nn.Module"
    for module in model.modules():
        if isinstance(module, torch.jit.ScriptModule):
            return ("the model is a TorchScript program: its layers cannot be re-initialised "
                    "one by one")
        if isinstance(module, torch.fx.GraphModule):
            return ("the model is a torch.export program: its layers cannot be re-initialised "
                    "one by one")
    if not _has_parameters(model):
        return "the model has no accessible parameters"
    return None


def model_stages(model: nn.Module, max_stages: int | None = DEFAULT_MAX_STAGES) -> list[str]:
    """The cascade of :func:`randomisation_test`: module names, output end first (see the rule in
    the module docstring). ``max_stages=None`` returns every stage."""
    prefix, body = "", model
    while True:
        children = [(n, c) for n, c in body.named_children() if _has_parameters(c)]
        if len(children) != 1:
            break
        prefix, body = f"{prefix}{children[0][0]}.", children[0][1]
    if not children:  # a single parameterised layer
        return [prefix.rstrip(".")] if prefix else []
    blocks: list[str] = []
    for name, child in children:
        inner = ([f"{name}.{n}" for n, c in child.named_children() if _has_parameters(c)]
                 if isinstance(child, (nn.Sequential, nn.ModuleList, nn.ModuleDict)) else [])
        blocks += inner or [name]
    stages = [prefix + b for b in reversed(blocks)]
    return stages if max_stages is None else stages[:max_stages]


def _randomise(module: nn.Module, seed: int, device: torch.device) -> None:
    """Re-initialise every parameter of ``module`` in place, reproducibly."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        done: set[int] = set()
        for sub in module.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()
                done.update(id(p) for p in sub.parameters(recurse=False))
        for p in module.parameters():
            if id(p) not in done:
                perm = torch.randperm(p.numel(), device=p.device)
                p.copy_(p.detach().flatten()[perm].view_as(p))


def ig_explainer(baselines: Sequence[object] = ("black", "blur"), output: str = "probability",
                 n_steps: int = DEFAULT_SANITY_STEPS) -> Explainer:
    """medig's IG as an ``explain(model, inputs, target)`` callable on a fixed, cheap grid."""
    from medig.attr import FundusIntegratedGradients
    from medig.attr.outputs import explained_output
    from medig.baselines import make_baselines

    # randomisation_test explains the same images once per stage: their baseline images (a blur
    # is the costly one) are resolved once.
    last: list[Any] = [None, None]  # inputs, their resolved baselines

    def explain(model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        if last[0] is not inputs:
            last[:] = [inputs, make_baselines(list(baselines), inputs)[0]]
        ig = FundusIntegratedGradients(explained_output(model, output), baselines=last[1])
        return ig.explain(inputs, target=target, completeness_tol=None, n_steps=n_steps,
                          method="adaptive").attributions

    return explain


def map_similarity(a: Tensor, b: Tensor, fov: Tensor | None = None, cell: int = DEFAULT_CELL
                   ) -> tuple[Tensor, Tensor]:
    """Spearman and SSIM of ``|attribution|`` of two maps pooled to cells: ``(N,)`` each.

    ``fov`` as for :func:`medig.checks.baseline_agreement` (None: every pixel; these are maps
    only, so the field of view cannot be found here: pass ``medig.preprocess.fov_mask(images)``).
    """
    ma, mb = channel_map(a.detach()).abs(), channel_map(b.detach()).abs()
    mask = fov_or_all(fov, ma)
    ga, valid = cell_grid(ma, mask, cell)
    gb, _ = cell_grid(mb, mask, cell)
    rho = spearman(ga, gb, valid)

    def unit(g: Tensor) -> Tensor:
        top = (g * valid).flatten(1).max(dim=1).values.clamp_min(1e-300)
        return g * valid / top[:, None, None]

    return rho, ssim(unit(ga), unit(gb), valid)


def randomisation_test(
    model: nn.Module,
    inputs: Tensor,
    target: int | Sequence[int] | Tensor,
    explain: Explainer | None = None,
    stages: Sequence[str] | None = None,
    fov: FovArg = "auto",
    *,
    baselines: Sequence[object] = ("black", "blur"),
    output: str = "probability",
    n_steps: int = DEFAULT_SANITY_STEPS,
    max_stages: int | None = DEFAULT_MAX_STAGES,
    cell: int = DEFAULT_CELL,
    threshold: float = RANDOMISATION_MAX_SIMILARITY,
    seed: int = 0,
) -> RandomisationResult:
    """Cascading model-randomisation test of an explainer on a few images.

    Parameters
    ----------
    model : nn.Module
        The classifier (pixel-space input). It is deep-copied; the copy is randomised.
    inputs : Tensor
        ``(N, C, H, W)`` images in [0, 1] on the model's device.
    target : int, sequence or Tensor
        Class explained per image (kept fixed through the cascade).
    explain : callable, optional
        ``explain(model, inputs, target) -> attributions`` (``(N, C, H, W)`` or ``(N, H, W)``);
        default :func:`ig_explainer` with ``baselines``, ``output`` and ``n_steps``.
    stages : sequence of str, optional
        Names (as in ``model.named_modules()``) of the modules to randomise, output end first;
        default :func:`model_stages` (``max_stages`` of them).
    fov : Tensor, "auto" or None
        Bool field of view ``(N, 1, H, W)`` the maps are compared in. ``"auto"`` (default):
        detected on ``inputs`` by :func:`medig.preprocess.fov_mask`, as the audit does, so that
        the tied cells of a fundus photograph's black surround do not count; None: every pixel
        (the default before ``"auto"``; it fails IG on the demo model through those ties).
    baselines, output, n_steps :
        Settings of the default explainer.
    max_stages : int or None
        Length of the default cascade.
    cell : int
        Pooling cell side in pixels.
    threshold : float
        The check passes when the median similarity at the last stage is below it.
    seed : int
        Seed of the re-initialisation.

    Returns
    -------
    RandomisationResult
    """
    start = time.perf_counter()
    n = inputs.shape[0]

    def not_run(reason: str, names: Sequence[str] = ()) -> RandomisationResult:
        empty = torch.empty((0, n), dtype=torch.float64)
        return RandomisationResult(list(names), empty, empty, None, threshold, reason,
                                   time.perf_counter() - start, n)

    reason = not_randomisable(model)
    if reason is not None:
        return not_run(reason)
    if n == 0:
        return not_run("no images to test")
    try:
        work = copy.deepcopy(model).eval()
    except Exception as error:  # noqa: BLE001 - an uncopyable model is "not run", not a crash
        return not_run(f"the model could not be copied ({type(error).__name__})")
    names = list(stages) if stages is not None else model_stages(work, max_stages)
    if not names:
        return not_run("no parameterised layers were found to randomise")
    modules = dict(work.named_modules())
    missing = [s for s in names if s not in modules]
    if missing:
        raise ValueError(f"stages not found in the model: {', '.join(missing)}")
    explain = explain or ig_explainer(baselines, output, n_steps)
    fov = resolve_fov(fov, inputs)
    device = inputs.device
    tgt = torch.as_tensor(target, dtype=torch.long, device=device).reshape(-1)
    tgt = tgt.expand(n).clone() if tgt.numel() == 1 else tgt

    original = explain(work, inputs, tgt).detach()
    rhos, ssims = [], []
    for k, name in enumerate(names):
        _randomise(modules[name], seed * 1009 + k, device)
        randomised = explain(work, inputs, tgt).detach()
        rho, sim = map_similarity(original, randomised, fov, cell)
        rhos.append(rho.cpu())
        ssims.append(sim.cpu())
    similarity, ssim_values = torch.stack(rhos), torch.stack(ssims)
    last = _nanmedian(similarity[-1])
    if math.isnan(last):
        return RandomisationResult(names, similarity, ssim_values, None, threshold,
                                   "the maps were constant: no rank order to compare",
                                   time.perf_counter() - start, n)
    return RandomisationResult(names, similarity, ssim_values, bool(last < threshold), threshold,
                               None, time.perf_counter() - start, n)
