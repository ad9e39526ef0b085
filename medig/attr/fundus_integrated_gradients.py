# SPDX-License-Identifier: Apache-2.0
"""Integrated Gradients for fundus classifiers: Captum's IG plus domain baselines and completeness."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from captum.attr import IntegratedGradients
from torch import Tensor

from medig.attr.adaptive import adaptive_path_integral
from medig.attr.chunking import auto_chunk_size, is_out_of_memory
from medig.attr.class_group import ClassGroup, GroupExplanation
from medig.attr.completeness import (
    ABSOLUTE_FLOOR,
    MAP_TOL,
    absolute_tolerance,
    completeness_delta,
    relative_error,
)
from medig.attr.explanation import Explanation
from medig.attr.gradients import input_gradients_only
from medig.attr.outputs import GroupProbability
from medig.baselines import BaselineSpec, make_baselines

__all__ = ["FundusIntegratedGradients"]

_CAPTUM_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                   "riemann_trapezoid")

#: Tolerance of the check that a forward returns probabilities (rows summing to one) before a
#: class group's summed probability is explained.
_PROBABILITY_ATOL = 1e-3


def _is_captum_baseline(baselines: Any) -> bool:
    """Baselines Captum understands natively (None, numbers, tensors, tuples of those)."""
    if baselines is None or isinstance(baselines, (int, float, Tensor)):
        return True
    return isinstance(baselines, tuple) and all(
        isinstance(b, (int, float, Tensor)) for b in baselines
    )


class FundusIntegratedGradients(IntegratedGradients):
    r"""Integrated Gradients (Sundararajan et al., 2017, https://arxiv.org/abs/1703.01365) for
    fundus photograph classifiers, as a thin subclass of :class:`captum.attr.IntegratedGradients`.

    IG attributes F(x) - F(x') to the pixels of ``x`` by integrating the model's gradient along the
    straight path from a baseline ``x'`` to ``x``. medig adds what an audit of medical images needs:

    - named domain baselines in pixel space (``black``, ``blur``, ``uniform``, ``gaussian``,
      ``fov_mean``, a :class:`~medig.baselines.ReferenceSet` of healthy images, any registered
      name or callable), and lists of them whose attributions are averaged;
    - completeness statistics per image (:meth:`explain`);
    - steps chosen per image until a completeness tolerance holds and the map's estimated error
      is within ``map_tol`` (:meth:`explain`);
    - input-only gradients (no parameter gradients), working inside ``torch.no_grad()``;
    - automatic chunking of the path points to free memory, halving on out-of-memory.

    Inputs are RGB in [0, 1]: fold the model's normalisation into it with
    :func:`medig.with_normalization` so that ``black`` is a black photograph.

    Parameters
    ----------
    forward_func : callable
        The model (or any function) returning ``(N, num_classes)`` outputs (or ``(N,)``).
    baselines : baseline spec
        Default baselines of :meth:`attribute` and :meth:`explain` when the call gives none.
    multiply_by_inputs : bool
        As in Captum: multiply the path-integrated gradients by ``x - x'`` (global attribution).
    """

    def __init__(
        self,
        forward_func: Callable[..., Tensor],
        baselines: BaselineSpec = "black",
        multiply_by_inputs: bool = True,
    ) -> None:
        super().__init__(forward_func, multiply_by_inputs=multiply_by_inputs)
        self.baselines = baselines

    # ------------------------------------------------------------------ Captum's contract
    def attribute(
        self,
        inputs: Any,
        baselines: Any = None,
        target: Any = None,
        additional_forward_args: Any = None,
        n_steps: int = 50,
        method: str = "gausslegendre",
        internal_batch_size: int | None = None,
        return_convergence_delta: bool = False,
    ) -> Any:
        """Captum's ``IntegratedGradients.attribute``, with medig's baselines accepted too.

        With a tensor, number or tuple of those as ``baselines`` the result is exactly Captum's.
        A name, callable, :class:`~medig.baselines.ReferenceSet` or list of baselines is resolved
        on ``inputs`` (a single tensor) and the attributions are averaged over the baselines; the
        convergence delta is then the mean delta, i.e. completeness against the mean baseline
        score. ``baselines=None`` uses the constructor's default (``"black"``: zeros, as Captum).
        A :class:`~medig.ClassGroup` ``target`` attributes the group's summed probability
        ``P(group)`` (the forward must return probabilities), exactly as Captum's IG of that
        single-output forward. Parameter gradients are not computed, and the call works under
        ``torch.no_grad()``.
        """
        if isinstance(target, ClassGroup):
            return self._group_explainer(inputs, target, additional_forward_args).attribute(
                inputs, baselines=baselines, additional_forward_args=additional_forward_args,
                n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
                return_convergence_delta=return_convergence_delta)
        spec = self.baselines if baselines is None else baselines
        kwargs = dict(target=target, additional_forward_args=additional_forward_args,
                      n_steps=n_steps, method=method, internal_batch_size=internal_batch_size,
                      return_convergence_delta=return_convergence_delta)
        with input_gradients_only(self.forward_func):
            if _is_captum_baseline(spec):
                return super().attribute(inputs, baselines=spec, **kwargs)
            if not isinstance(inputs, Tensor):
                raise TypeError("named or callable baselines need a single input tensor")
            resolved, _names = make_baselines(spec, inputs)
            outputs = [super(FundusIntegratedGradients, self).attribute(inputs, baselines=b, **kwargs)
                       for b in resolved]
        if return_convergence_delta:
            attributions = torch.stack([o[0] for o in outputs]).mean(dim=0)
            return attributions, torch.stack([o[1] for o in outputs]).mean(dim=0)
        return torch.stack(outputs).mean(dim=0)

    # ------------------------------------------------------------------ medig's explanation
    def explain(
        self,
        inputs: Tensor,
        target: int | Tensor | Sequence[int] | ClassGroup | None = None,
        baselines: BaselineSpec | None = None,
        completeness_tol: float | None = 0.01,
        max_steps: int = 512,
        method: Literal["adaptive"] | str = "adaptive",
        internal_batch_size: int | Literal["auto"] | None = "auto",
        additional_forward_args: Any = None,
        n_steps: int = 16,
        *,
        completeness_atol: float = ABSOLUTE_FLOOR,
        path_dtype: torch.dtype | None = None,
        map_tol: float | None = MAP_TOL,
    ) -> Explanation:
        """Attributions for a batch with per-image completeness statistics.

        Parameters
        ----------
        inputs : Tensor
            ``(N, C, H, W)`` images in [0, 1] (float32 or float64).
        target : int, sequence of int, Tensor, ClassGroup or None
            Output index per image; None explains the predicted (arg-max) class. A
            :class:`~medig.ClassGroup` explains the summed probability of its classes (the
            forward must return probabilities); the result is then a ``GroupExplanation``.
        baselines : baseline spec, optional
            Overrides the constructor's default; a list is averaged over.
        completeness_tol : float or None
            Relative tolerance: an image is complete when
            ``|delta| <= max(completeness_atol, completeness_tol * |F(x) - F(x')|)`` (the rule of
            ``scipy.integrate.quad``). Steps are raised per image until it holds or ``max_steps``
            is reached (then the image is flagged, ``converged=False``). None runs a single pass
            with ``n_steps`` and only reports the errors.
        max_steps : int
            Most gradient evaluations per image and baseline.
        method : str
            ``"adaptive"`` (default): nested bisection of the path driven by completeness and by
            the map's error estimate (see :mod:`medig.attr.adaptive`), starting with the midpoint
            and the quarter points (3 evaluations, accepted when the path is straight and the map
            settled), then the ends (the gradient at the input is shared by all baselines). It
            puts nodes only where the path is non-linear and stops each image separately; at
            equal map accuracy it needed fewer evaluations than the cheapest sufficient
            Gauss-Legendre grid on the models measured (bench/RESULTS.md, map accuracy), by a
            margin that depends on the model. A Captum method name
            (``"gausslegendre"``, ``"riemann_trapezoid"``, ...) runs Captum's own quadrature,
            starting at ``n_steps`` and doubling for the images not yet within tolerance.
        internal_batch_size : int, "auto" or None
            Path points per forward/backward pass. ``"auto"`` sizes it from free memory
            (``torch.cuda.mem_get_info`` on CUDA) and halves it on out-of-memory; None runs all
            points of a round at once.
        additional_forward_args : any
            Extra model arguments, as in Captum (per-image tensors are indexed per path point).
        n_steps : int
            Starting step count of the Captum methods.
        completeness_atol : float
            Absolute tolerance of the rule, in units of the explained output (default 1e-6: float32
            noise only). For softmax probabilities ``medig audit`` uses 1e-3
            (:data:`medig.attr.completeness.PROBABILITY_ATOL`).
        path_dtype : torch.dtype, optional
            ``torch.float16`` or ``torch.bfloat16``: run the path passes of the adaptive method
            under autocast in that dtype (GPUs). Completeness is still checked in float32 against
            the float32 scores, and images that miss the tolerance are integrated again in float32
            (their ``n_steps`` count both passes).
        map_tol : float or None
            Most estimated relative L2 error of each image's map (averaged over the baselines),
            default 0.05: the adaptive method refines an image until its completeness rule holds
            **and** this estimate (``map_error``, from nested quadrature levels, see
            :mod:`medig.attr.adaptive`) is within ``map_tol``; an image that reaches
            ``max_steps`` first is flagged. None: completeness alone. The Captum methods give no
            map estimate (``map_error`` is NaN) and ignore it.

        Returns
        -------
        Explanation
        """
        if isinstance(target, ClassGroup):
            grouped = self._group_explainer(inputs, target, additional_forward_args)
            explanation = grouped.explain(
                inputs, None, baselines, completeness_tol, max_steps, method, internal_batch_size,
                additional_forward_args, n_steps, completeness_atol=completeness_atol,
                path_dtype=path_dtype, map_tol=map_tol)
            return GroupExplanation.of(explanation, target)
        if not isinstance(inputs, Tensor) or inputs.ndim < 2:
            raise TypeError("explain expects a batched input tensor (N, C, H, W)")
        if method != "adaptive" and method not in _CAPTUM_METHODS:
            raise ValueError(f"unknown method {method!r}; use 'adaptive' or one of {_CAPTUM_METHODS}")
        if completeness_tol is not None and completeness_tol <= 0:
            raise ValueError("completeness_tol must be positive (or None)")
        if not (completeness_atol >= 0 and math.isfinite(completeness_atol)):
            raise ValueError("completeness_atol must be a finite number >= 0")
        if map_tol is not None and not (map_tol > 0 and math.isfinite(map_tol)):
            raise ValueError("map_tol must be a positive number (or None)")
        if path_dtype is not None and method != "adaptive":
            raise ValueError("path_dtype needs method='adaptive'")
        # Leave inference mode for the whole call: tensors made inside it cannot enter autograd.
        with torch.inference_mode(False):
            inputs = inputs.clone() if inputs.is_inference() else inputs.detach()
            return self._explain(inputs, target, baselines, completeness_tol, max_steps, method,
                                 internal_batch_size, additional_forward_args, n_steps,
                                 completeness_atol, path_dtype, map_tol)

    def _explain(
        self, inputs: Tensor, target: Any, baselines: BaselineSpec | None,
        completeness_tol: float | None, max_steps: int, method: str,
        internal_batch_size: int | str | None, additional_forward_args: Any, n_steps: int,
        completeness_atol: float = ABSOLUTE_FLOOR, path_dtype: torch.dtype | None = None,
        map_tol: float | None = MAP_TOL,
    ) -> Explanation:
        spec = self.baselines if baselines is None else baselines
        resolved, names = make_baselines(spec, inputs)
        base_list = [torch.as_tensor(b, dtype=inputs.dtype, device=inputs.device).expand_as(inputs)
                     for b in resolved]

        with torch.no_grad():
            outputs = self._forward(inputs, additional_forward_args)
            target_t = self._resolve_target(target, outputs)
            score = self._select(outputs, target_t)
            base_scores = torch.stack([
                self._select(self._forward(b, additional_forward_args), target_t)
                for b in base_list])
        baseline_score = base_scores.mean(dim=0)
        tol = completeness_tol if completeness_tol is not None else math.inf
        abs_tol = (absolute_tolerance(score, baseline_score, tol, completeness_atol)
                   if completeness_tol is not None else torch.full_like(score, math.inf))

        chunk = self._initial_chunk(inputs, internal_batch_size)
        per_baseline: list[Tensor] = []
        total_steps = torch.zeros(inputs.shape[0], dtype=torch.long)
        map_error = torch.full((inputs.shape[0],), math.nan, dtype=torch.float64)
        with input_gradients_only(self.forward_func):
            if method == "adaptive":
                # All baselines together: the map rule is on their averaged map, and the gradient
                # at the input is evaluated once for all of them. Without a tolerance: one uniform
                # trapezoid pass of n_steps segments per baseline.
                fixed = completeness_tol is None
                result = adaptive_path_integral(
                    self.forward_func, inputs, base_list, target_t, abs_tol,
                    n_steps + 1 if fixed else max_steps, chunk,
                    initial_segments=n_steps if fixed else None,
                    additional_forward_args=additional_forward_args, path_dtype=path_dtype,
                    endpoint_values=(list(base_scores), score),
                    map_tol=None if fixed else map_tol,
                    multiply_by_inputs=self.multiplies_by_inputs)
                per_baseline = [attr * (inputs - base) if self.multiplies_by_inputs else attr
                                for attr, base in zip(result.per_baseline, base_list)]
                total_steps += result.n_evals.cpu()
                if result.map_error is not None:
                    map_error = result.map_error.cpu()
            else:
                for base in base_list:
                    attr, steps, chunk = self._captum_doubling(
                        inputs, base, target_t, abs_tol, method, n_steps,
                        max_steps if completeness_tol is not None else n_steps, chunk,
                        additional_forward_args)
                    per_baseline.append(attr)
                    total_steps += steps.cpu()
        attributions = per_baseline[0] if len(per_baseline) == 1 else (
            torch.stack(per_baseline).mean(dim=0))

        delta = completeness_delta(attributions, score, baseline_score)
        return Explanation(
            attributions=attributions,
            target=target_t,
            score=score,
            baseline_score=baseline_score,
            delta=delta,
            relative_error=relative_error(delta, score, baseline_score),
            n_steps=total_steps,
            converged=(delta.abs() <= abs_tol if completeness_tol is not None
                       else torch.ones_like(score, dtype=torch.bool)),
            method=method,
            baselines=names,
            completeness_tol=completeness_tol,
            per_baseline=per_baseline,
            abs_tol=abs_tol,
            completeness_atol=completeness_atol,
            baseline_inputs=base_list,
            map_error=map_error,
            map_tol=map_tol if method == "adaptive" and completeness_tol is not None else None,
        )

    # ------------------------------------------------------------------ class groups
    def _group_explainer(self, inputs: Any, group: ClassGroup,
                         additional_forward_args: Any) -> FundusIntegratedGradients:
        """The explainer of ``P(group)``: this one's forward wrapped in
        :class:`~medig.attr.outputs.GroupProbability`, with the same baselines and multiplier.

        The forward must return class probabilities (rows of non-negative numbers summing to
        one, e.g. :func:`medig.explained_output`): a sum of logits has no meaning, so logits are
        refused rather than silently passed through a softmax medig cannot know the model lacks.

        Raises
        ------
        ValueError
            The group does not index the outputs, or the outputs are not probabilities.
        """
        indices = group.indices
        with torch.no_grad():
            outputs = self._forward(inputs, additional_forward_args)
        if outputs.ndim != 2 or max(indices) >= outputs.shape[1] or min(indices) < 0:
            raise ValueError(f"class group {group.name!r} ({list(indices)}) does not index the "
                             f"model's outputs of shape {tuple(outputs.shape)}")
        sums = outputs.detach().double().sum(dim=1)
        if bool((outputs < 0).any()) or not torch.allclose(sums, torch.ones_like(sums),
                                                            atol=_PROBABILITY_ATOL):
            raise ValueError(
                f"target=ClassGroup({group.name!r}, ...) explains a summed probability, but the "
                "forward function does not return probabilities (rows must be non-negative and "
                "sum to 1); build FundusIntegratedGradients on medig.explained_output(model)")
        return FundusIntegratedGradients(GroupProbability(self.forward_func, indices),
                                         baselines=self.baselines,
                                         multiply_by_inputs=self.multiplies_by_inputs)

    # ------------------------------------------------------------------ helpers
    def _forward(self, x: Any, additional_forward_args: Any) -> Tensor:
        """The forward at ``x`` (a tensor, or Captum's tuple of input tensors)."""
        inputs = x if isinstance(x, tuple) else (x,)
        if additional_forward_args is None:
            return self.forward_func(*inputs)
        extra = additional_forward_args if isinstance(additional_forward_args, tuple) else (
            additional_forward_args,)
        return self.forward_func(*inputs, *extra)

    @staticmethod
    def _resolve_target(target: Any, outputs: Tensor) -> Tensor | None:
        n = outputs.shape[0]
        if outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1 and target is None):
            return None
        if target is None:
            return outputs.reshape(n, -1).argmax(dim=1)
        t = torch.as_tensor(target, dtype=torch.long, device=outputs.device)
        return t.expand(n).clone() if t.ndim == 0 else t

    @staticmethod
    def _select(outputs: Tensor, target: Tensor | None) -> Tensor:
        if target is None:
            return outputs.reshape(outputs.shape[0], -1)[:, 0]
        return outputs.reshape(outputs.shape[0], -1).gather(1, target.view(-1, 1))[:, 0]

    def _initial_chunk(self, inputs: Tensor, internal_batch_size: int | str | None) -> int:
        if internal_batch_size == "auto":
            # A forward compiled for a fixed pass size (medig.attr.compiled) sets the chunk.
            return int(getattr(self.forward_func, "pass_points", 0)) or auto_chunk_size(inputs)
        if internal_batch_size is None:
            return 1 << 30
        if int(internal_batch_size) < 1:
            raise ValueError("internal_batch_size must be >= 1, 'auto' or None")
        return int(internal_batch_size)

    def _captum_doubling(
        self, inputs: Tensor, base: Tensor, target: Tensor | None, abs_tol: Tensor, method: str,
        n_steps: int, max_steps: int, chunk: int, additional_forward_args: Any,
    ) -> tuple[Tensor, Tensor, int]:
        """Captum's own quadrature, doubling the steps for the images not yet within tolerance.

        Gauss-Legendre nodes move when the count changes, so every round re-evaluates from
        scratch; this is the reference the adaptive schedule is measured against.
        """
        n = inputs.shape[0]
        attributions = torch.zeros_like(inputs)
        steps_used = torch.zeros(n, dtype=torch.long)
        todo = torch.arange(n, device=inputs.device)
        steps = max(2, n_steps)
        while todo.numel():
            def run(start: int, stop: int, steps: int = steps) -> tuple[Tensor, Tensor]:
                idx = todo[start:stop]
                args = additional_forward_args
                if isinstance(args, Tensor) and args.shape[0] == n:
                    args = args[idx]
                return super(FundusIntegratedGradients, self).attribute(
                    inputs[idx], baselines=base[idx],
                    target=None if target is None else target[idx],
                    additional_forward_args=args, n_steps=steps, method=method,
                    internal_batch_size=max(chunk, stop - start),
                    return_convergence_delta=True)

            # Rows per Captum call so that one call's points (rows x steps) fit in a chunk; on
            # out-of-memory the chunk (in points) halves, down to one point per pass.
            while True:
                rows = max(1, chunk // steps)
                try:
                    parts = [run(s, min(s + rows, todo.numel()))
                             for s in range(0, todo.numel(), rows)]
                    break
                except Exception as error:  # noqa: BLE001 - re-raised unless a fixable OOM
                    if not is_out_of_memory(error) or chunk == 1:
                        raise
                    chunk = max(1, chunk // 2)
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
            attr = torch.cat([p[0] for p in parts])
            delta = torch.cat([p[1] for p in parts])
            attributions[todo] = attr
            steps_used[todo.cpu()] += steps
            done = delta.abs() <= abs_tol[todo]
            todo = todo[~done]
            if steps >= max_steps:
                break
            steps = min(max_steps, steps * 2)
        return attributions, steps_used, chunk
