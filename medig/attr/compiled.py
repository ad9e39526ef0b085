# SPDX-License-Identifier: Apache-2.0
"""The explained forward compiled once per audit: ``torch.compile`` at one padded pass shape.

``torch.compile`` specialises a graph to its input shape, and the adaptive schedule sends passes of
every size (one round bisects 3 segments, the next 11). Padding every path pass with zero rows to
one fixed number of points makes it one shape, so the model compiles once (forward and backward)
and every later pass reuses that graph. Padded rows are independent of the real ones (eval mode:
no batch statistics), so the real rows' values and gradients are those of the unpadded pass, up to
float rounding.

Compiling costs minutes on a CPU and pays only for audits long enough to win it back
(:func:`should_compile`). Measured on this project's CPUs (bench/RESULTS.md, "compile") it never
did: the compiled, padded passes were no faster than the eager channels-last ones, so ``--compile``
is off by default everywhere until a device where it pays has been measured. A compile failure (no
compiler, an unsupported model) falls back to the eager model with one warning line; it never fails
the audit.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["BREAK_EVEN_IMAGES", "PaddedCompiledForward", "compiled_forward", "should_compile"]

_log = logging.getLogger("medig")

#: Images an audit must compute for compiling to pay, by device type; None: never by default. CPU:
#: no break-even (bench/compile.py: compiled passes 0.78x the eager ones at a 224 s compile,
#: bench/RESULTS.md "compile"); CUDA: not measured (run bench/gpu.py), so off unless asked.
BREAK_EVEN_IMAGES: dict[str, int | None] = {"cpu": None, "cuda": None}


def should_compile(setting: bool | None, device: torch.device, n_images: int) -> bool:
    """``--compile`` resolved: the user's choice, or (None) whether ``n_images`` pass the break-even."""
    if setting is not None:
        return bool(setting)
    threshold = BREAK_EVEN_IMAGES.get(device.type)
    return threshold is not None and n_images >= threshold


class PaddedCompiledForward(nn.Module):
    """``forward`` for IG's path passes, compiled for exactly ``points`` rows per pass.

    Calls that need input gradients are padded with zero rows to ``points`` rows (larger calls are
    cut into pieces of ``points``) and run through ``torch.compile(forward, dynamic=False)``; other
    calls (the no-grad scores, extra arguments) run the eager ``forward``. The first compiled call
    also runs a backward pass, so that a failure of either graph shows up there: then this wrapper
    logs one warning and stays eager.

    Parameters
    ----------
    forward : nn.Module
        The explained output (e.g. :func:`medig.attr.outputs.explained_output`), eval mode.
    points : int
        Rows per compiled pass: the chunk of path points (:func:`medig.attr.chunking.auto_chunk_size`).
    compiler : callable, optional
        ``module -> compiled callable``; default ``torch.compile(module, dynamic=False)``.
    """

    def __init__(self, forward: nn.Module, points: int,
                 compiler: Callable[[nn.Module], Callable[[Tensor], Tensor]] | None = None) -> None:
        super().__init__()
        if points < 1:
            raise ValueError("points must be >= 1")
        self.eager = forward
        self.pass_points = int(points)
        self._compiler = compiler
        self._compiled: Callable[[Tensor], Tensor] | None = None
        self.failed: str | None = None  # why compiling failed, once it has
        self.compiled_passes = 0

    def forward(self, x: Tensor, *args: object) -> Tensor:
        if (self.failed is not None or args or not torch.is_grad_enabled()
                or not x.requires_grad):
            return self.eager(x, *args)
        if x.shape[0] > self.pass_points:
            return torch.cat([self(part) for part in x.split(self.pass_points)])
        n = x.shape[0]
        padded = x
        if n < self.pass_points:
            padded = torch.cat([x, x.new_zeros((self.pass_points - n, *x.shape[1:]))])
        if padded.ndim == 4:  # one memory layout: strides are part of the compiled graph's guard
            padded = padded.contiguous(memory_format=torch.channels_last)
        try:
            if self._compiled is None:
                self._compiled = self._compile(padded)
            out = self._compiled(padded)
        except Exception as error:  # noqa: BLE001 - any compiler failure means: run eager
            self._give_up(error)
            return self.eager(x)
        self.compiled_passes += 1
        return out[:n]

    def _compile(self, example: Tensor) -> Callable[[Tensor], Tensor]:
        compiled = (self._compiler(self.eager) if self._compiler is not None
                    else torch.compile(self.eager, dynamic=False))
        # Warm up forward *and* backward at the fixed shape: both graphs are built here, so an
        # error in either surfaces now, inside the fallback, not in a later backward call.
        probe = torch.zeros_like(example).requires_grad_(True)
        torch.autograd.grad(compiled(probe).float().sum(), probe)
        return compiled

    def _give_up(self, error: BaseException) -> None:
        first = (str(error).strip().splitlines() or [""])[0][:160]
        self.failed = f"{type(error).__name__}: {first}"
        self._compiled = None
        _log.warning("torch.compile failed (%s); running the model eagerly", self.failed)


def compiled_forward(forward: nn.Module, size: int, device: torch.device,
                     channels: int = 3) -> PaddedCompiledForward:
    """``forward`` compiled at the chunk of path points that ``explain`` uses for ``size`` px images."""
    from medig.attr.chunking import auto_chunk_size

    sample = torch.empty(1, channels, size, size, device=device)
    return PaddedCompiledForward(forward, auto_chunk_size(sample))
