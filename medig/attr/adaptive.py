# SPDX-License-Identifier: Apache-2.0
"""Per-image adaptive quadrature of the IG path integral, driven by completeness and map accuracy.

Why this schedule (measured on ReLU CNNs, see ``bench/ig_vs_captum.py``): every gradient
evaluation at a point of the path also yields F there, so for each segment [a, b] of the path the
trapezoid estimate of the integral of dF/da can be compared with the exact F(b) - F(a). The
difference is that segment's share of the completeness gap, known without extra model calls, and
the image's delta is exactly the sum of these shares.

Completeness is necessary, not sufficient: it is one number, and errors of opposite sign in
different pixels cancel in it (a map accepted at 0.15% completeness error had 20% relative L2
error against converged IG). The integrand is a whole gradient image per path point, so the map
gets its own error estimate, as ``scipy.integrate.quad_vec`` does for vector-valued integrals: the
path is cut into *panels* of two trapezoid segments [a, m], [m, b]; the panel's two-segment
trapezoid minus its one-segment trapezoid over [a, b] is a vector (an image) estimating the error
of the coarser rule, known from nodes already evaluated (nested levels). Its L2 norm over pixels
(of the attribution, i.e. times ``x - x'``) is the panel's error; an image's map error estimate is
the sum of its panels' errors, averaged over the baselines, relative to the L2 norm of the averaged
map (:data:`MAP_ERROR` says why the sum and not a smaller combination).

The rule: an image is done when its completeness gap is within tolerance on every baseline's path
**and** its map error estimate is within ``map_tol``. Panels are split (two new evaluations, at the
midpoints of its segments) worst first: by completeness gap where completeness is missed, by map
error where the map is; until what is left in the panels not split is within half the tolerance
(the current errors predict how much refinement the image needs). All baselines of an image are
integrated together because the rule is on their averaged map. Panels whose errors are negligible
for their width are folded into the running sums and their gradients freed, which bounds memory.

The first round fits a straight path: it evaluates the midpoint alone (alpha = 1/2) and checks the
midpoint rule against F(x) - F(x'), which ``explain`` has computed anyway, and F(1/2) against the
chord between F(x') and F(x). A path passing both gets the quarter points (alpha = 1/4, 3/4): the
two-point midpoint rule, whose difference from the one-point rule is the map's error estimate; if
that and completeness hold, the image is done after three evaluations per baseline, with an
estimate. Otherwise the ends are added: the five nodes 0, 1/4, 1/2, 3/4, 1 are two panels, and no
evaluation is wasted. Interior nodes matter: a path can leave and come back (the blur baseline's F
dipped by 0.24 and recovered on a bundled example).

The gradient at alpha = 1 is the gradient at the input itself, the same for every baseline: it is
evaluated once per image (or passed in, ``end``).

Reduced precision (``path_dtype``): the path passes run under ``torch.autocast``; each image's
completeness is then checked in float32 against the float32 scores F(x), F(x') and the images that
miss the tolerance are integrated again in float32.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from medig.attr.chunking import run_chunked
from medig.attr.gradients import value_and_grad

__all__ = ["MAP_ERROR", "AdaptiveResult", "adaptive_path_integral"]

#: Uniform segments of the first full grid (after the first round): the ends and quarter points.
INITIAL_SEGMENTS = 4
#: A panel whose errors are below this fraction of the tolerances per unit width is final.
LOCK_FRACTION = 0.05
#: Each round splits the worst panels until the error left elsewhere is within this share of the
#: tolerance.
TARGET_SHARE = 0.5
#: How the panels' error norms combine into the map's: ``"sum"`` (the triangle inequality, as
#: ``quad_vec``), an upper bound of the norm of the summed error vectors whatever their signs.
MAP_ERROR = "rss"


@dataclass
class _Node:
    alpha: float
    value: float  # F at this point of the path
    deriv: float  # dF/dalpha = grad . (x - x')
    grad: Tensor


@dataclass
class _Panel:
    """Trapezoid segments [a, m] and [m, b], or a bare segment [a, b] (``m`` None) whose map error
    is its parent panel's (NaN on a first grid of odd length)."""

    a: _Node
    m: _Node | None
    b: _Node
    err: float = math.nan  # L2 norm of (fine - coarse trapezoid) x weight: the map error estimate

    @property
    def width(self) -> float:
        return self.b.alpha - self.a.alpha

    @property
    def gap(self) -> float:
        """Trapezoid of dF/dalpha minus F(b) - F(a): this panel's share of the completeness gap."""
        if self.m is None:
            return 0.5 * self.width * (self.a.deriv + self.b.deriv) - (self.b.value - self.a.value)
        return (0.25 * self.width * (self.a.deriv + 2 * self.m.deriv + self.b.deriv)
                - (self.b.value - self.a.value))

    def segment_gaps(self) -> list[tuple[str, float]]:
        """Each segment's share of the gap: ``("left", ...), ("right", ...)``, or ``("all", ...)``."""
        if self.m is None:
            return [("all", self.gap)]
        a, m, b = self.a, self.m, self.b
        return [("left", 0.5 * (m.alpha - a.alpha) * (a.deriv + m.deriv) - (m.value - a.value)),
                ("right", 0.5 * (b.alpha - m.alpha) * (m.deriv + b.deriv) - (b.value - m.value))]

    def trapezoid(self) -> Tensor:
        """The panel's trapezoid integral of the gradient (over its two segments)."""
        if self.m is None:
            return (self.a.grad + self.b.grad) * (0.5 * self.width)
        return (self.a.grad + 2 * self.m.grad + self.b.grad) * (0.25 * self.width)


@dataclass
class AdaptiveResult:
    """Path-integrated gradients (not yet multiplied by ``x - x'``) and their cost."""

    integrated_grads: Tensor  # (N, C, H, W), the first baseline's (the only one for a tensor)
    n_evals: Tensor  # (N,) gradient evaluations per image, all baselines' paths together
    path_error: Tensor  # (N,) mean over baselines of the segment gaps (the delta up to rounding)
    chunk_size: int  # the internal batch size that fitted in memory
    end: list[tuple[float, Tensor] | None] | None = None  # (F, gradient) at the inputs, per image
    fell_back: Tensor | None = None  # (N,) bool: integrated again in float32 (``path_dtype``)
    map_error: Tensor | None = None  # (N,) estimated relative L2 error of the (averaged) map
    per_baseline: list[Tensor] = field(default_factory=list)  # (N, C, H, W) per baseline


def _select_args(args: Any, index: Tensor, n: int) -> Any:
    """Pick the rows of per-image tensor arguments for a chunk of path points."""
    if args is None:
        return None
    items = args if isinstance(args, tuple) else (args,)
    picked = tuple(a[index] if isinstance(a, Tensor) and a.ndim and a.shape[0] == n else a
                   for a in items)
    return picked if isinstance(args, tuple) else picked[0]


def _to_split(errors: list[float], accepted: float, tol: float, budget: int) -> int:
    """How many of the panels with ``errors`` (sorted worst first) to split this round.

    Worst first, until the error left in the others (plus what is already accepted) is within
    ``TARGET_SHARE * tol``: the current errors predict how much refinement the image needs, so one
    round does what several one-panel rounds would, without splitting panels that do not matter.
    """
    left = accepted + sum(errors)
    n_split = 0
    while n_split < min(len(errors), budget):
        left -= errors[n_split]
        n_split += 1
        if abs(left) <= TARGET_SHARE * tol:
            break
    return n_split


def _combine(errors: Sequence[float]) -> float:
    """The map error of a set of panel errors (see :data:`MAP_ERROR`)."""
    if MAP_ERROR == "rss":
        return math.sqrt(sum(e * e for e in errors))
    return float(sum(errors))


def adaptive_path_integral(
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    baselines: Tensor | Sequence[Tensor],
    target: Tensor | None,
    abs_tol: Tensor,
    max_steps: int,
    chunk_size: int,
    initial_segments: int | None = None,
    additional_forward_args: Any = None,
    path_dtype: torch.dtype | None = None,
    endpoint_values: tuple[Tensor | Sequence[Tensor], Tensor] | None = None,
    end: list[tuple[float, Tensor] | None] | None = None,
    *,
    map_tol: float | None = None,
    multiply_by_inputs: bool = True,
) -> AdaptiveResult:
    """Integrate the gradient along ``baselines -> inputs`` until each image's errors are within
    tolerance.

    Parameters
    ----------
    forward_func : callable
        Model; called on ``(points, *additional_forward_args)`` with autograd enabled.
    inputs : Tensor
        ``(N, C, H, W)``.
    baselines : Tensor or sequence of Tensor
        ``(N, C, H, W)`` each (already broadcast). Several baselines are integrated together: the
        map rule is on their averaged map.
    target : Tensor or None
        ``(N,)`` output index per image, or None for scalar outputs.
    abs_tol : Tensor
        ``(N,)`` absolute completeness tolerance per image (on every baseline's path).
    max_steps : int
        Most gradient evaluations per image and baseline.
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
        ``(F(baselines), F(inputs))`` in full precision, ``(N,)`` each (a sequence of ``(N,)``,
        one per baseline, for several): the first round's checks, and the float32 completeness
        check of ``path_dtype``.
    end : list, optional
        Per image, ``(F, gradient)`` at the inputs from an earlier call with the same inputs and
        targets (``AdaptiveResult.end``), or None: reused instead of evaluated.
    map_tol : float, optional
        Most estimated relative L2 error of each image's (averaged) map; None: completeness alone.
    multiply_by_inputs : bool
        Whether the map is the integrated gradient times ``x - x'`` (the norm of the map error
        is taken on the map).
    """
    if map_tol is not None and not (map_tol > 0 and math.isfinite(map_tol)):
        raise ValueError("map_tol must be a positive number (or None)")
    bases = [baselines] if isinstance(baselines, Tensor) else list(baselines)
    first = INITIAL_SEGMENTS if initial_segments is None else initial_segments
    ends: tuple[list[Tensor], Tensor] | None = None
    if endpoint_values is not None:
        f0, f1 = endpoint_values
        f0s = [f0] if isinstance(f0, Tensor) and f0.ndim == 1 else list(f0)
        ends = (f0s, f1)
    options: dict[str, Any] = dict(max_steps=max_steps, first_segments=first, map_tol=map_tol,
                                   multiply_by_inputs=multiply_by_inputs)
    if path_dtype is None:
        # The midpoint round needs F at both ends; it is not run under autocast (reduced-precision
        # values would be compared with float32 ones) nor for a fixed grid (initial_segments).
        midpoint = initial_segments is None and ends is not None and max_steps >= first + 1
        return _integrate(forward_func, inputs, bases, target, abs_tol, chunk_size,
                          additional_forward_args, None, end, ends if midpoint else None,
                          **options)
    if ends is None:
        raise ValueError("path_dtype needs endpoint_values (the float32 F(x') and F(x))")
    low = _integrate(forward_func, inputs, bases, target, abs_tol, chunk_size,
                     additional_forward_args, path_dtype, None, None, **options)
    # The float32 check: the same delta explain() reports, against float32 scores, per baseline.
    f1 = ends[1].detach().double().to(inputs.device)
    redo = torch.zeros(inputs.shape[0], dtype=torch.bool)
    for ig, base, f0 in zip(low.per_baseline, bases, ends[0]):
        total = (ig.double() * (inputs - base).double()).flatten(1).sum(1)
        gap = total - (f1 - f0.detach().double().to(inputs.device))
        redo |= (gap.abs() > abs_tol.to(total)).cpu()
    low.fell_back = redo
    low.end = None  # reduced-precision gradients are not reused for a float32 path
    if not bool(redo.any()):
        return low
    index = redo.nonzero()[:, 0]
    dev_index = index.to(inputs.device)
    full = _integrate(
        forward_func, inputs[dev_index], [b[dev_index] for b in bases],
        None if target is None else target[dev_index], abs_tol[dev_index.to(abs_tol.device)],
        low.chunk_size, _select_args(additional_forward_args, dev_index, inputs.shape[0]),
        None, None, None, **options)
    for mine, theirs in zip(low.per_baseline, full.per_baseline):
        mine[dev_index] = theirs
    low.n_evals[index] += full.n_evals
    low.path_error[index] = full.path_error
    if low.map_error is not None and full.map_error is not None:
        low.map_error[index] = full.map_error
    low.chunk_size = full.chunk_size
    return low


def _integrate(
    forward_func: Callable[..., Tensor],
    inputs: Tensor,
    bases: list[Tensor],
    target: Tensor | None,
    abs_tol: Tensor,
    chunk_size: int,
    additional_forward_args: Any,
    path_dtype: torch.dtype | None,
    end: list[tuple[float, Tensor] | None] | None,
    ends: tuple[list[Tensor], Tensor] | None,
    *,
    max_steps: int,
    first_segments: int,
    map_tol: float | None,
    multiply_by_inputs: bool,
) -> AdaptiveResult:
    """The schedule for all baselines of a batch; ``ends`` (F(x') per baseline, F(x)) enables the
    first round. Path ``p`` is image ``p % n`` against baseline ``p // n``."""
    n, k_bases = inputs.shape[0], len(bases)
    n_paths = n * k_bases
    base_all = torch.cat(bases) if k_bases > 1 else bases[0]
    diff = inputs.repeat(k_bases, *([1] * (inputs.ndim - 1))) - base_all
    image_of = torch.arange(n_paths, device=inputs.device) % n
    first = min(first_segments, max(1, max_steps - 1))
    totals = torch.zeros_like(diff)
    accepted_gap = [0.0] * n_paths
    accepted_err = [0.0] * n_paths
    n_evals = [0] * n_paths
    tol = abs_tol.detach().double().cpu().tolist()
    tol = [tol[p % n] for p in range(n_paths)]
    map_est = [math.nan] * n
    groups = [[i + k * n for k in range(k_bases)] for i in range(n)]
    autocast = (torch.autocast(inputs.device.type, dtype=path_dtype) if path_dtype is not None
                else contextlib.nullcontext())

    def weighted(p: int, v: Tensor) -> Tensor:
        return v * diff[p] if multiply_by_inputs else v

    def norm(p: int, v: Tensor) -> float:
        return float(weighted(p, v).double().norm())

    def evaluate(points: list[tuple[int, float]]) -> list[_Node]:
        nonlocal chunk_size
        if not points:
            return []
        index = torch.tensor([p for p, _ in points], device=inputs.device)
        alphas = torch.tensor([a for _, a in points], device=inputs.device, dtype=inputs.dtype)

        def run(start: int, stop: int) -> tuple[Tensor, Tensor, Tensor]:
            idx = index[start:stop]
            al = alphas[start:stop].view(-1, *([1] * (inputs.ndim - 1)))
            pts = base_all[idx] + al * diff[idx]
            if pts.ndim == 4:
                # channels_last: 1.3-1.5x faster convolutions on CPU (bench/RESULTS.md, levers).
                pts = pts.contiguous(memory_format=torch.channels_last)
            img = image_of[idx]
            tgt = None if target is None else target[img]
            with autocast:
                values, grads = value_and_grad(
                    forward_func, pts, tgt, _select_args(additional_forward_args, img, n))
            grads = grads.to(inputs.dtype)
            derivs = (grads * diff[idx]).reshape(stop - start, -1).sum(dim=1)
            return values, derivs, grads

        parts, chunk_size = run_chunked(len(points), chunk_size, run)
        values = torch.cat([p[0] for p in parts]).double().cpu().tolist()
        derivs = torch.cat([p[1] for p in parts]).double().cpu().tolist()
        grads = [g for p in parts for g in p[2]]
        for p, _ in points:
            n_evals[p] += 1
        return [_Node(a, v, d, g) for (_, a), v, d, g in zip(points, values, derivs, grads)]

    def panel(p: int, a: _Node, m: _Node | None, b: _Node) -> _Panel:
        pan = _Panel(a, m, b)
        if m is not None:  # fine minus coarse trapezoid: (w / 2) (g_m - (g_a + g_b) / 2)
            pan.err = norm(p, (m.grad - 0.5 * (a.grad + b.grad)) * (0.5 * pan.width))
        return pan

    def accept(p: int, pan: _Panel) -> None:
        totals[p].add_(pan.trapezoid())
        accepted_gap[p] += pan.gap
        accepted_err[p] = _combine([accepted_err[p], pan.err])

    def mean_map_norm(maps: list[Tensor], paths: list[int]) -> float:
        return float(torch.stack([weighted(p, m) for p, m in zip(paths, maps)]).double()
                     .mean(0).norm())

    def relative(err_sum: float, map_norm: float) -> float:
        if math.isnan(err_sum):
            return math.nan
        if map_norm > 0:
            return err_sum / (k_bases * map_norm)
        return 0.0 if err_sum == 0 else math.inf

    nodes: list[dict[float, _Node]] = [{} for _ in range(n_paths)]  # evaluated nodes per path
    open_groups = list(range(n))
    if ends is not None:
        f0s = [v.detach().double().cpu().tolist() for v in ends[0]]
        f1 = ends[1].detach().double().cpu().tolist()

        def chord(p: int, alpha: float) -> float:
            lo = f0s[p // n][p % n]
            return lo + alpha * (f1[p % n] - lo)

        def rise(p: int) -> float:
            return f1[p % n] - f0s[p // n][p % n]

        # Round 1: the midpoint rule over the whole path, checked against F(x) - F(x'); and F at
        # the midpoint on the chord, so that a path that leaves and comes back symmetrically
        # (derivative zero at its far point, like F(x) - F(x')) is not taken for a straight one.
        straight = []
        for p, node in enumerate(evaluate([(p, 0.5) for p in range(n_paths)])):
            nodes[p][0.5] = node
            if abs(node.deriv - rise(p)) <= tol[p] and abs(node.value - chord(p, 0.5)) <= tol[p]:
                straight.append(p)
        candidates = [g for g in range(n) if all(p in straight for p in groups[g])]
        # Round 2 for straight-looking paths: the quarter points. The two-point midpoint rule is
        # the map; its difference from the one-point rule is the map's error estimate.
        todo = [(p, a) for g in candidates for p in groups[g] for a in (0.25, 0.75)]
        for (p, a), node in zip(todo, evaluate(todo)):
            nodes[p][a] = node
        open_groups = [g for g in range(n) if g not in candidates]
        for g in candidates:
            paths = groups[g]
            maps = [0.5 * (nodes[p][0.25].grad + nodes[p][0.75].grad) for p in paths]
            errs = [norm(p, m - nodes[p][0.5].grad) for p, m in zip(paths, maps)]
            gaps = [0.5 * (nodes[p][0.25].deriv + nodes[p][0.75].deriv) - rise(p) for p in paths]
            bent = any(abs(nodes[p][a].value - chord(p, a)) > tol[p]
                       for p in paths for a in (0.25, 0.75))
            est = relative(sum(errs), mean_map_norm(maps, paths))
            complete = all(abs(gp) <= tol[p] for gp, p in zip(gaps, paths))
            if complete and not bent and (map_tol is None or est <= map_tol):
                for p, m, e, gp in zip(paths, maps, errs, gaps):
                    totals[p].copy_(m)
                    accepted_gap[p], accepted_err[p] = gp, e
                map_est[g] = est
            else:
                open_groups.append(g)
        open_groups.sort()
    # The full first grid: the ends and the quarter points. The gradient at the input is the same
    # for every baseline: evaluated once per image (or known from an earlier call).
    grid = [j / first for j in range(first + 1)]
    shared: dict[int, _Node] = {}
    if end is not None:
        for g in open_groups:
            known = end[g]
            if known is not None:
                value, grad = known
                shared[g] = _Node(1.0, value, 0.0, grad)
    todo = []
    for g in open_groups:
        for p in groups[g]:
            for a in grid:
                if a in nodes[p] or (a == 1.0 and g in shared):
                    continue
                todo.append((p, a))
                if a == 1.0:
                    shared[g] = _Node(1.0, 0.0, 0.0, torch.empty(0))  # placeholder: evaluated
    for (p, a), node in zip(todo, evaluate(todo)):
        nodes[p][a] = node
        if a == 1.0:
            shared[p % n] = node
    for g in open_groups:
        src = shared[g]
        for p in groups[g]:
            if 1.0 not in nodes[p]:
                nodes[p][1.0] = _Node(1.0, src.value, float((src.grad * diff[p]).sum()), src.grad)
    pending: dict[int, list[_Panel]] = {}
    for g in open_groups:
        for p in groups[g]:
            nd = nodes[p]
            pending[p] = [panel(p, nd[grid[j]], nd[grid[j + 1]] if j + 2 <= first else None,
                                nd[grid[min(j + 2, first)]])
                          for j in range(0, first, 2)]
    # The input's node outlives this point (for a later call); the others live in their panels,
    # whose gradients are freed as they are accepted.
    end_out: list[tuple[float, Tensor] | None] = [
        (shared[i].value, shared[i].grad) if i in shared else (end[i] if end else None)
        for i in range(n)]
    del nodes
    while open_groups:
        to_split: list[tuple[int, _Panel, set[str]]] = []
        for g in list(open_groups):
            paths = groups[g]
            maps = [totals[p] + sum((pan.trapezoid() for pan in pending[p]),
                                    torch.zeros_like(totals[p])) for p in paths]
            map_norm = mean_map_norm(maps, paths)
            err_sum = _combine([accepted_err[p] for p in paths]
                               + [pan.err for p in paths for pan in pending[p]])
            est = relative(err_sum, map_norm)
            gap_of = {p: accepted_gap[p] + sum(pan.gap for pan in pending[p]) for p in paths}
            complete_of = {p: abs(gap_of[p]) <= tol[p] for p in paths}
            map_ok = map_tol is None or est <= map_tol
            budget = {p: max_steps - n_evals[p] for p in paths}
            if (all(complete_of.values()) and map_ok) or all(b <= 0 for b in budget.values()):
                for p in paths:
                    for pan in pending.pop(p):
                        accept(p, pan)
                map_est[g] = est
                open_groups.remove(g)
                continue
            # Lock in panels whose errors are negligible for their width (their gradients are
            # freed); split the worst panels; keep the rest pending.
            map_share = map_tol * map_norm if map_tol is not None else math.inf
            for p in paths:
                keep = []
                for pan in pending[p]:
                    if (abs(pan.gap) <= LOCK_FRACTION * tol[p] * pan.width
                            and pan.err <= LOCK_FRACTION * map_share * pan.width):
                        accept(p, pan)
                    else:
                        keep.append(pan)
                pending[p] = keep
            # What to split, per panel: its halves ("left", "right"; one new node each) or, for
            # a bare segment, the whole (one new node). Completeness picks the segments with the
            # worst gaps; the map picks the panels with the worst map errors (both halves).
            chosen: dict[int, tuple[int, _Panel, set[str]]] = {}

            def take(p: int, pan: _Panel, halves: set[str]) -> None:
                have = chosen.get(id(pan), (p, pan, set()))[2]
                extra = len(halves - have) if pan.m is not None else (0 if have else 1)
                if extra and extra <= budget[p]:
                    chosen[id(pan)] = (p, pan, have | halves if pan.m is not None else {"all"})
                    budget[p] -= extra

            for p in paths:
                if complete_of[p] or budget[p] <= 0:
                    continue
                segs = sorted(((half, gap, pan) for pan in pending[p]
                               for half, gap in pan.segment_gaps()),
                              key=lambda t: abs(t[1]), reverse=True)
                n_split = _to_split([gap for _h, gap, _s in segs], accepted_gap[p], tol[p],
                                    budget[p])
                for half, _gap, pan in segs[:n_split]:
                    take(p, pan, {half})
            if not map_ok:
                assert map_tol is not None  # map_ok is True without a map rule
                ranked = sorted(((p, pan) for p in paths for pan in pending[p]),
                                key=lambda t: -t[1].err if not math.isnan(t[1].err) else -math.inf)
                for p, pan in ranked:
                    left = _combine([accepted_err[q] for q in paths]
                                    + [s.err for q in paths for s in pending[q]
                                       if id(s) not in chosen])
                    if (not math.isnan(left)
                            and left <= TARGET_SHARE * map_tol * k_bases * map_norm):
                        break
                    take(p, pan, {"left", "right"})
            if not chosen:  # nothing left to split within the budget: done, not within tolerance
                for p in paths:
                    for pan in pending.pop(p):
                        accept(p, pan)
                map_est[g] = est
                open_groups.remove(g)
                continue
            for p in paths:
                pending[p] = [pan for pan in pending[p] if id(pan) not in chosen]
            to_split.extend(chosen.values())
        if not to_split:
            break
        points = []
        for p, pan, halves in to_split:
            if pan.m is None:
                points.append((p, 0.5 * (pan.a.alpha + pan.b.alpha)))
                continue
            if "left" in halves:
                points.append((p, 0.5 * (pan.a.alpha + pan.m.alpha)))
            if "right" in halves:
                points.append((p, 0.5 * (pan.m.alpha + pan.b.alpha)))
        new = iter(evaluate(points))
        for p, pan, halves in to_split:
            if pan.m is None:
                pending[p].append(panel(p, pan.a, next(new), pan.b))
                continue
            # A half not split stays a bare segment; its map error is the parent panel's (which
            # covered it), so that no piece of the path is ever without an estimate.
            if "left" in halves:
                pending[p].append(panel(p, pan.a, next(new), pan.m))
            else:
                pending[p].append(_Panel(pan.a, None, pan.m, pan.err))
            if "right" in halves:
                pending[p].append(panel(p, pan.m, next(new), pan.b))
            else:
                pending[p].append(_Panel(pan.m, None, pan.b, pan.err))
    per_baseline = list(totals.split(n)) if k_bases > 1 else [totals]
    evals = torch.tensor(n_evals).view(k_bases, n).sum(0)
    path_error = torch.tensor(accepted_gap, dtype=torch.float64).view(k_bases, n).mean(0)
    return AdaptiveResult(per_baseline[0], evals, path_error, chunk_size, end=end_out,
                          map_error=torch.tensor(map_est, dtype=torch.float64),
                          per_baseline=per_baseline)
