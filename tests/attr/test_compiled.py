# SPDX-License-Identifier: Apache-2.0
"""The compiled, padded path forward: one graph per audit, the eager numbers, and a safe fallback."""
from __future__ import annotations

import logging

import pytest
import torch

import medig.attr.compiled as compiled
from medig import FundusIntegratedGradients
from medig.attr.compiled import PaddedCompiledForward, should_compile
from tests.conftest import small_cnn


class CountingBackend:
    """A ``torch.compile`` backend that counts the graphs it is asked to compile and runs them as
    traced (no code generation: fast, and needs no C compiler)."""

    def __init__(self) -> None:
        self.graphs = 0
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        self.shapes.append(tuple(example_inputs[0].shape) if example_inputs else ())
        return gm.forward


def _dynamo_available() -> bool:
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


@pytest.mark.skipif(not _dynamo_available(), reason="torch.compile unavailable")
def test_compiles_once_for_passes_of_every_size_and_matches_eager():
    torch._dynamo.reset()
    net = small_cnn(1)
    backend = CountingBackend()
    forward = PaddedCompiledForward(
        net, points=8, compiler=lambda m: torch.compile(m, backend=backend, dynamic=False))
    torch.manual_seed(0)
    x = torch.rand(5, 3, 24, 24)
    eager = FundusIntegratedGradients(net).explain(x, target=1, internal_batch_size=8)
    compiled = FundusIntegratedGradients(forward).explain(x, target=1)
    # the adaptive rounds send passes of many sizes (10 points, then 5, 3, ...): all padded to 8
    assert forward.compiled_passes >= 3
    assert backend.graphs == 1, backend.shapes
    assert torch.allclose(compiled.attributions, eager.attributions, rtol=1e-4, atol=1e-7)
    assert torch.equal(compiled.n_steps, eager.n_steps)


def test_padding_leaves_values_and_gradients_of_the_real_rows_unchanged():
    net = small_cnn(2)
    seen: list[int] = []

    def compiler(module):
        def run(x):
            seen.append(x.shape[0])
            return module(x)
        return run

    forward = PaddedCompiledForward(net, points=6, compiler=compiler)
    for n in (1, 4, 6, 13):  # 13 rows: cut into 6 + 6 + 1, each padded to 6
        x = torch.rand(n, 3, 16, 16, requires_grad=True)
        out = forward(x)
        (grad,) = torch.autograd.grad(out[:, 1].sum(), x)
        x2 = x.detach().clone().requires_grad_(True)
        ref = net(x2)
        (ref_grad,) = torch.autograd.grad(ref[:, 1].sum(), x2)
        assert out.shape == ref.shape
        assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(grad, ref_grad, atol=1e-6)
    assert set(seen) == {6}  # every compiled pass had exactly the fixed shape
    with torch.no_grad():  # calls without gradients (the scores) stay eager and unpadded
        seen.clear()
        forward(torch.rand(3, 3, 16, 16))
        assert seen == []


def test_compile_failure_falls_back_to_eager_with_one_warning(caplog):
    net = small_cnn(3)

    def broken(module):
        raise RuntimeError("no C compiler found\nlong traceback ...")

    forward = PaddedCompiledForward(net, points=4, compiler=broken)
    x = torch.rand(3, 3, 16, 16)
    with caplog.at_level(logging.WARNING, logger="medig"):
        expl = FundusIntegratedGradients(forward).explain(x, target=0)
    ref = FundusIntegratedGradients(net).explain(x, target=0, internal_batch_size=4)
    assert torch.allclose(expl.attributions, ref.attributions, atol=1e-6)
    warnings = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "no C compiler found" in forward.failed


def test_failure_in_the_backward_graph_is_caught_at_warm_up():
    net = small_cnn(4)

    class BadBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            raise RuntimeError("backward graph failed to compile")

    def compiler(module):
        return lambda x: module(BadBackward.apply(x))

    forward = PaddedCompiledForward(net, points=4, compiler=compiler)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    out = forward(x)  # must not raise: the warm-up ran a backward pass and gave up
    (grad,) = torch.autograd.grad(out[:, 0].sum(), x)
    assert forward.failed is not None and grad.abs().sum() > 0


def test_should_compile_only_where_it_pays(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert should_compile(True, cpu, 1) and not should_compile(False, cpu, 10**6)
    # measured: never paid on a CPU; not measured on a GPU: off unless asked
    assert not should_compile(None, cpu, 10**6) and not should_compile(None, cuda, 10**6)
    monkeypatch.setitem(compiled.BREAK_EVEN_IMAGES, "cuda", 300)  # a device where it pays
    assert not should_compile(None, cuda, 299) and should_compile(None, cuda, 300)
