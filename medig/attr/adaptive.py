# SPDX-License-Identifier: Apache-2.0
"""Per-image adaptive quadrature of the IG path integral, driven by completeness.

Why this schedule (measured on ReLU CNNs, see ``bench/ig_vs_captum.py``): every gradient
evaluation at a point of the path also yields F there, so for each segment [a, b] of the path the
trapezoid estimate of the integral of dF/da can be compared with the exact F(b) - F(a). The
difference is that segment's share of the completeness gap, known without extra model calls, and
the image's delta is exactly the sum of these shares.

The first round fits the path: it evaluates the midpoint alone (alpha = 1/2, one evaluation) and
checks the midpoint rule against F(x) - F(x'), which ``explain`` has computed anyway, and F(1/2)
against the chord between F(x') and F(x); both hold on a linear path, so such an image costs one
evaluation where a fixed grid costs its whole count. Otherwise the second round adds the two ends and the quarter points (5 nodes, 4 trapezoid
segments). Interior nodes matter: a path can leave and come back (the blur baseline's F dipped by
0.24 and recovered on a bundled example), and a trapezoid over the two ends alone accepts such a
path while missing everything along it. Each later round, per image: if the summed gap is within
tolerance the image is done and leaves the batch; otherwise the worst segments are bisected, worst
first, until the gap left in the segments not bisected is within half the tolerance (the current
errors predict how much refinement the image needs). Bisection reuses both endpoints (nested nodes,
unlike Gauss-Legendre, whose nodes all move when the count changes), so nodes cluster where the path
is non-linear (where ReLUs switch, where a softmax saturates). Segments whose gap is negligible for
their width are folded into the running sum and their gradients freed, which bounds memory.

The gradient at alpha = 1 is the gradient at the input itself, the same for every baseline: pass it
back in (``end``) and a second baseline's path costs one evaluation less.

Completeness is necessary, not sufficient: like any quadrature's delta (Captum's included), the
summed gap can be small while individual segments are not.

Reduced precision (``path_dtype``): the path passes run under ``torch.autocast``; each image's
completeness is then checked in float32 against the float32 scores F(x), F(x') and the images that
miss the tolerance are integrated again in float32.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from medig.attr.chunking import run_chunked
from medig.attr.gradients import value_and_grad

__all__ = ["AdaptiveResult", "adaptive_path_integral"]

#: Uniform segments of the first full grid (after the midpoint round): the ends and quarter points.
INITIAL_SEGMENTS = 4
#: A segment whose gap is below this fraction of the tolerance per unit width is final.
LOCK_FRACTION = 0.05
#: Each round bisects the worst segments until the gap left elsewhere is within this share of the
#: tolerance.
TARGET_SHARE = 0.5


@dataclass
class _Node:
    alpha: float
    value: float  # F at this point of the path
    deriv: float  # dF/dalpha = grad . (x - x')
    grad: Tensor


@dataclass
class _Segment:
    a: _Node
    b: _Node

    @property
    def width(self) -> float:
        return self.b.alpha - self.a.alpha

    @property
    def error(self) -> float:
        trapezoid = 0.5 * self.width * (self.a.deriv + self.b.deriv)
        return trapezoid - (self.b.value - self.a.value)


@dataclass
class AdaptiveResult:
    """Path-integrated gradients (not yet multiplied by ``x - x'``) and their cost."""

    integrated_grads: Tensor  # (N, C, H, W)
    n_evals: Tensor  # (N,) gradient evaluations per image
    path_error: Tensor  # (N,) sum of segment gaps (equals the completeness delta up to rounding)
    chunk_size: int  # the internal batch size that fitted in memory
    end: list[tuple[float, Tensor] | None] | None = None  # (F, gradient) at the inputs, per image
    fell_back: Tensor | None = None  # (N,) bool: integrated again in float32 (``path_dtype``)


def _select_args(args: Any, index: Tensor, n: int) -> Any:
    """Pick the rows of per-image tensor arguments for a chunk of path points."""
    if args is None:
        return None
    items = args if isinstance(args, tuple) else (args,)
    picked = tuple(a[index] if isinstance(a, Tensor) and a.ndim and a.shape[0] == n else a
                   for a in items)
    return picked if isinstance(args, tuple) else picked[0]


def _to_split(segments: list[_Segment], accepted: float, tol: float, budget: int) -> int:
    """How many of ``segments`` (sorted worst first) to bisect this round.

    Worst first, until the gap left in the others (plus what is already accepted) is within
    ``TARGET_SHARE * tol``: the current errors predict how much refinement the image needs, so one
    round does what several one-segment rounds would, without bisecting segments that do not matter.
    """
    left = accepted + sum(s.error for s in segments)
    n_split = 0
    while n_split < min(len(segments), budget):
        left -= segments[n_split].error
        n_split += 1
        if abs(left) <= TARGET_SHARE * tol:
            break
    return n_split


def adaptive_path_integral(
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    baselines: Tensor,
    target: Tensor | None,
    abs_tol: Tensor,
    max_steps: int,
    chunk_size: int,
    initial_segments: int | None = None,
    additional_forward_args: Any = None,
    path_dtype: torch.dtype | None = None,
    endpoint_values: tuple[Tensor, Tensor] | None = None,
    end: list[tuple[float, Tensor] | None] | None = None,
) -> AdaptiveResult:
    """Integrate the gradient along ``baselines -> inputs`` until each image's gap is within tolerance.

    Parameters
    ----------
    forward_func : callable
        Model; called on ``(points, *additional_forward_args)`` with autograd enabled.
    inputs, baselines : Tensor
        ``(N, C, H, W)`` each (baselines already broadcast).
    target : Tensor or None
        ``(N,)`` output index per image, or None for scalar outputs.
    abs_tol : Tensor
        ``(N,)`` absolute completeness tolerance per image.
    max_steps : int
        Most gradient evaluations per image.
    chunk_size : int
        Path points per forward/backward pass (halved on out-of-memory).
    initial_segments : int, optional
        Uniform segments of a single first round (``initial_segments + 1`` evaluations, no
        midpoint round); default: the midpoint round, then :data:`INITIAL_SEGMENTS` segments.
    additional_forward_args : any
        Extra model arguments (per-image tensors are indexed per path point).
    path_dtype : torch.dtype, optional
        Run the path passes under autocast in this dtype; needs ``endpoint_values``.
    endpoint_values : (Tensor, Tensor), optional
        ``(F(baselines), F(inputs))`` in full precision, ``(N,)`` each: the midpoint round's check,
        and the float32 completeness check of ``path_dtype``.
    end : list, optional
        Per image, ``(F, gradient)`` at the inputs from an earlier call with the same inputs and
        targets (another baseline; ``AdaptiveResult.end``), or None: reused instead of evaluated.
    """
    first = INITIAL_SEGMENTS if initial_segments is None else initial_segments
    if path_dtype is None:
        # The midpoint round needs F at both ends; it is not run under autocast (reduced-precision
        # values would be compared with float32 ones) nor for a fixed grid (initial_segments).
        midpoint = (initial_segments is None and endpoint_values is not None
                    and max_steps >= first + 1)
        return _integrate(forward_func, inputs, baselines, target, abs_tol, max_steps,
                          chunk_size, first, additional_forward_args, None, end,
                          endpoint_values if midpoint else None)
    if endpoint_values is None:
        raise ValueError("path_dtype needs endpoint_values (the float32 F(x') and F(x))")
    low = _integrate(forward_func, inputs, baselines, target, abs_tol, max_steps, chunk_size,
                     first, additional_forward_args, path_dtype, None, None)
    # The float32 check: the same delta explain() reports, against float32 scores.
    f0, f1 = (v.detach().double().to(inputs.device) for v in endpoint_values)
    total = (low.integrated_grads.double() * (inputs - baselines).double()).flatten(1).sum(1)
    redo = ((total - (f1 - f0)).abs() > abs_tol.to(total)).cpu()
    low.fell_back = redo
    low.end = None  # reduced-precision gradients are not reused for a float32 path
    if not bool(redo.any()):
        return low
    index = redo.nonzero()[:, 0]
    dev_index = index.to(inputs.device)
    full = _integrate(
        forward_func, inputs[dev_index], baselines[dev_index],
        None if target is None else target[dev_index], abs_tol[dev_index.to(abs_tol.device)],
        max_steps, low.chunk_size, first,
        _select_args(additional_forward_args, dev_index, inputs.shape[0]), None, None, None)
    low.integrated_grads[dev_index] = full.integrated_grads
    low.n_evals[index] += full.n_evals
    low.path_error[index] = full.path_error
    low.chunk_size = full.chunk_size
    return low


def _integrate(
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    baselines: Tensor,
    target: Tensor | None,
    abs_tol: Tensor,
    max_steps: int,
    chunk_size: int,
    first_segments: int,
    additional_forward_args: Any,
    path_dtype: torch.dtype | None,
    end: list[tuple[float, Tensor] | None] | None,
    ends: tuple[Tensor, Tensor] | None,
) -> AdaptiveResult:
    """The schedule for one baseline; ``ends`` (F(x'), F(x)) enables the midpoint round."""
    n = inputs.shape[0]
    diff = inputs - baselines
    first = min(first_segments, max(1, max_steps - 1))
    totals = torch.zeros_like(inputs)
    accepted_error = [0.0] * n
    n_evals = [0] * n
    tol = abs_tol.detach().double().cpu().tolist()
    autocast = (torch.autocast(inputs.device.type, dtype=path_dtype) if path_dtype is not None
                else contextlib.nullcontext())

    def evaluate(points: list[tuple[int, float]]) -> list[_Node]:
        nonlocal chunk_size
        if not points:
            return []
        index = torch.tensor([i for i, _ in points], device=inputs.device)
        alphas = torch.tensor([a for _, a in points], device=inputs.device, dtype=inputs.dtype)

        def run(start: int, stop: int) -> tuple[Tensor, Tensor, Tensor]:
            idx = index[start:stop]
            al = alphas[start:stop].view(-1, *([1] * (inputs.ndim - 1)))
            pts = baselines[idx] + al * diff[idx]
            if pts.ndim == 4:
                # channels_last: 1.3-1.5x faster convolutions on CPU (bench/RESULTS.md, levers).
                pts = pts.contiguous(memory_format=torch.channels_last)
            tgt = None if target is None else target[idx]
            with autocast:
                values, grads = value_and_grad(
                    forward_func, pts, tgt, _select_args(additional_forward_args, idx, n))
            grads = grads.to(inputs.dtype)
            derivs = (grads * diff[idx]).reshape(stop - start, -1).sum(dim=1)
            return values, derivs, grads

        parts, chunk_size = run_chunked(len(points), chunk_size, run)
        values = torch.cat([p[0] for p in parts]).double().cpu().tolist()
        derivs = torch.cat([p[1] for p in parts]).double().cpu().tolist()
        grads = [g for p in parts for g in p[2]]
        for i, _ in points:
            n_evals[i] += 1
        return [_Node(a, v, d, g) for (_, a), v, d, g in zip(points, values, derivs, grads)]

    def accept(i: int, seg: _Segment) -> None:
        totals[i].add_(seg.a.grad + seg.b.grad, alpha=0.5 * seg.width)
        accepted_error[i] += seg.error

    grid = [k / first for k in range(first + 1)]
    nodes: list[dict[float, _Node]] = [{} for _ in range(n)]  # evaluated nodes per image, by alpha
    open_images = list(range(n))
    if ends is not None:
        # Round 1: the midpoint rule over the whole path, checked against F(x) - F(x'); and F at
        # the midpoint on the chord, so that a path that leaves and comes back symmetrically
        # (derivative zero at its far point, like F(x) - F(x')) is not taken for a straight one.
        f0, f1 = (v.detach().double().cpu().tolist() for v in ends)
        open_images = []
        for i, node in enumerate(evaluate([(i, 0.5) for i in range(n)])):
            nodes[i][0.5] = node
            error = node.deriv - (f1[i] - f0[i])
            bend = node.value - 0.5 * (f0[i] + f1[i])
            if abs(error) <= tol[i] and abs(bend) <= tol[i]:
                totals[i].add_(node.grad)
                accepted_error[i] = error
            else:
                open_images.append(i)
    for i in open_images:  # the gradient at the inputs, known from another baseline's path
        if end is not None and (known := end[i]) is not None:
            value, grad = known
            nodes[i][1.0] = _Node(1.0, value, float((grad * diff[i]).sum()), grad)
    todo = [(i, a) for i in open_images for a in grid if a not in nodes[i]]
    for (i, a), node in zip(todo, evaluate(todo)):
        nodes[i][a] = node
    pending: dict[int, list[_Segment]] = {
        i: [_Segment(nodes[i][grid[k]], nodes[i][grid[k + 1]]) for k in range(first)]
        for i in open_images}
    # Only the input's node outlives this point (for the next baseline); the others live in their
    # segments, whose gradients are freed as they are accepted.
    nodes = [{1.0: nd[1.0]} if 1.0 in nd else {} for nd in nodes]
    while pending:
        to_split: list[tuple[int, _Segment]] = []
        for i in list(pending):
            segments = pending.pop(i)
            gap = accepted_error[i] + sum(s.error for s in segments)
            budget = max_steps - n_evals[i]
            if abs(gap) <= tol[i] or budget <= 0:
                for seg in segments:
                    accept(i, seg)
                continue
            # Lock in segments whose gap is negligible for their width (their gradients are freed);
            # bisect the worst segments; keep the rest pending.
            keep: list[_Segment] = []
            for seg in segments:
                if abs(seg.error) <= LOCK_FRACTION * tol[i] * seg.width:
                    accept(i, seg)
                else:
                    keep.append(seg)
            if not keep:
                continue
            keep.sort(key=lambda s: abs(s.error), reverse=True)
            n_split = _to_split(keep, accepted_error[i], tol[i], budget)
            to_split.extend((i, seg) for seg in keep[:n_split])
            if n_split < len(keep):
                pending[i] = keep[n_split:]
        if not to_split:
            break
        mids = evaluate([(i, 0.5 * (s.a.alpha + s.b.alpha)) for i, s in to_split])
        for (i, seg), mid in zip(to_split, mids):
            pending.setdefault(i, []).extend((_Segment(seg.a, mid), _Segment(mid, seg.b)))
    path_error = torch.tensor(accepted_error, dtype=torch.float64)
    # An image done in the midpoint round never touched alpha = 1: pass on what it was given.
    end_out = [(nd[1.0].value, nd[1.0].grad) if 1.0 in nd else (end[i] if end else None)
               for i, nd in enumerate(nodes)]
    return AdaptiveResult(totals, torch.tensor(n_evals), path_error, chunk_size, end=end_out)
