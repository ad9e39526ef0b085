# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from medig import FundusIntegratedGradients
from medig.baselines import blur
from tests.conftest import requires_cuda, small_cnn

CAPTUM_METHODS = ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                  "riemann_trapezoid"]


class Linear(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1, keepdim=True)


def linear_model() -> tuple[Linear, torch.Tensor]:
    w = torch.zeros(1, 3, 4, 4)
    w[:, 0] = 2.0  # positive
    w[:, 1] = -1.5  # negative
    return Linear(w), w  # channel 2 has zero coefficients


def test_linear_model_black_baseline_gives_w_times_x():
    model, w = linear_model()
    x = torch.rand(5, 3, 4, 4)
    ig = FundusIntegratedGradients(model)
    expl = ig.explain(x, target=0)
    assert torch.allclose(expl.attributions, w * x, atol=1e-4)
    assert torch.all(expl.attributions[:, 2] == 0)
    assert (expl.attributions[:, 0] > 0).all() and (expl.attributions[:, 1] < 0).all()
    attr = ig.attribute(x, target=0)
    assert torch.allclose(attr, w * x, atol=1e-4)


@pytest.mark.parametrize("method", CAPTUM_METHODS)
@pytest.mark.parametrize("baseline", ["tensor", "number"])
def test_attribute_equals_captum(method, baseline, cnn):
    x = torch.rand(3, 3, 16, 16)
    b = torch.rand(3, 3, 16, 16) * 0.2 if baseline == "tensor" else 0.1
    ours, d1 = FundusIntegratedGradients(cnn).attribute(
        x, baselines=b, target=1, n_steps=20, method=method, return_convergence_delta=True)
    ref, d2 = IntegratedGradients(cnn).attribute(
        x, baselines=b, target=1, n_steps=20, method=method, return_convergence_delta=True)
    assert torch.equal(ours, ref)
    assert torch.allclose(d1, d2)


@pytest.mark.parametrize("internal_batch_size", [1, 7, 30])
def test_attribute_internal_batch_size_equals_captum(internal_batch_size, cnn):
    x = torch.rand(3, 3, 16, 16)
    ours = FundusIntegratedGradients(cnn).attribute(
        x, target=[0, 1, 0], n_steps=10, internal_batch_size=internal_batch_size)
    ref = IntegratedGradients(cnn).attribute(
        x, target=[0, 1, 0], n_steps=10, internal_batch_size=internal_batch_size)
    assert torch.allclose(ours, ref, atol=1e-6)


@pytest.mark.parametrize("method", CAPTUM_METHODS)
def test_explain_fixed_steps_equals_captum(method, cnn):
    x = torch.rand(4, 3, 16, 16)
    expl = FundusIntegratedGradients(cnn).explain(
        x, target=1, completeness_tol=None, method=method, n_steps=24, internal_batch_size=32)
    ref, delta = IntegratedGradients(cnn).attribute(
        x, target=1, n_steps=24, method=method, return_convergence_delta=True)
    assert torch.allclose(expl.attributions, ref, atol=1e-6)
    assert torch.allclose(expl.delta, delta, atol=1e-5)
    assert (expl.n_steps == 24).all()


def test_adaptive_without_tolerance_is_uniform_trapezoid(cnn):
    # Uniform trapezoid with n segments == Captum's riemann_trapezoid rescaled: Captum's weights
    # sum to (n-1)/n over n points, ours to 1 over n+1 points, so compare with an explicit sum.
    x = torch.rand(2, 3, 16, 16)
    n = 8
    expl = FundusIntegratedGradients(cnn).explain(x, target=0, completeness_tol=None, n_steps=n)
    alphas = torch.linspace(0, 1, n + 1)
    weights = torch.full((n + 1,), 1.0 / n)
    weights[[0, -1]] = 0.5 / n
    total = torch.zeros_like(x)
    for a, wgt in zip(alphas, weights):
        p = (a * x).requires_grad_()
        (g,) = torch.autograd.grad(cnn(p)[:, 0].sum(), p)
        total += wgt * g
    assert torch.allclose(expl.attributions, total * x, atol=1e-5)
    assert (expl.n_steps == n + 1).all()


def test_named_and_callable_baselines(cnn):
    x = torch.rand(2, 3, 16, 16)
    ig = FundusIntegratedGradients(cnn)
    named = ig.attribute(x, baselines="blur", target=1, n_steps=8)
    explicit = IntegratedGradients(cnn).attribute(x, baselines=blur(x), target=1, n_steps=8)
    assert torch.allclose(named, explicit, atol=1e-6)
    called = ig.attribute(x, baselines=lambda t: blur(t), target=1, n_steps=8)
    assert torch.allclose(called, explicit, atol=1e-6)


def test_list_of_baselines_averages_attributions_and_delta(cnn):
    x = torch.rand(3, 3, 16, 16)
    ig = FundusIntegratedGradients(cnn)
    singles = [ig.attribute(x, baselines=b, target=1, n_steps=12, return_convergence_delta=True)
               for b in ("black", "blur", "uniform")]
    avg, delta = ig.attribute(x, baselines=["black", "blur", "uniform"], target=1, n_steps=12,
                              return_convergence_delta=True)
    assert torch.allclose(avg, torch.stack([s[0] for s in singles]).mean(0), atol=1e-6)
    assert torch.allclose(delta, torch.stack([s[1] for s in singles]).mean(0), atol=1e-6)
    # explain with fixed steps: attributions are the mean, completeness against the mean score
    expl = ig.explain(x, target=1, baselines=["black", "blur", "uniform"],
                      completeness_tol=None, method="gausslegendre", n_steps=12)
    assert torch.allclose(expl.attributions, avg, atol=1e-6)
    with torch.no_grad():
        mean_base = torch.stack([cnn(b)[:, 1] for b in (
            torch.zeros_like(x), blur(x), ig_uniform(x))]).mean(0)
    assert torch.allclose(expl.baseline_score, mean_base, atol=1e-5)
    assert expl.baselines == ["black", "blur", "uniform"]


def ig_uniform(x):
    from medig.baselines import uniform
    return uniform(x)


def test_default_target_is_predicted_class(cnn):
    x = torch.rand(6, 3, 16, 16)
    expl = FundusIntegratedGradients(cnn).explain(x)
    with torch.no_grad():
        assert torch.equal(expl.target, cnn(x).argmax(1))


def test_works_under_no_grad_and_inference_mode_without_parameter_grads(cnn):
    x = torch.rand(2, 3, 16, 16)
    ig = FundusIntegratedGradients(cnn)
    ref = ig.explain(x, target=1)
    with torch.no_grad():
        inside = ig.explain(x, target=1)
        attr = ig.attribute(x, target=1, n_steps=8)
    with torch.inference_mode():
        inside_inf = ig.explain(x, target=1)
    assert torch.allclose(ref.attributions, inside.attributions)
    assert torch.allclose(ref.attributions, inside_inf.attributions)
    assert attr.abs().sum() > 0
    assert all(p.grad is None for p in cnn.parameters())
    assert all(p.requires_grad for p in cnn.parameters())  # restored


def test_float64(cnn):
    net = small_cnn(dtype=torch.float64)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    expl = FundusIntegratedGradients(net).explain(x, completeness_tol=1e-3)
    assert expl.attributions.dtype == torch.float64
    assert expl.converged.all() and (expl.relative_error <= 1e-3).all()


@pytest.mark.parametrize("method", ["adaptive", "gausslegendre"])
def test_out_of_memory_halves_the_chunk(cnn, method):
    calls = []

    def forward(x):
        calls.append(x.shape[0])
        if x.shape[0] > 4:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return cnn(x)

    x = torch.rand(3, 3, 16, 16)
    expl = FundusIntegratedGradients(forward).explain(x, target=1, internal_batch_size=64,
                                                      method=method)
    ref = FundusIntegratedGradients(cnn).explain(x, target=1, internal_batch_size=64,
                                                 method=method)
    assert torch.allclose(expl.attributions, ref.attributions, atol=1e-5)
    failed = [i for i, c in enumerate(calls) if c > 4]
    assert failed, "no pass ever ran out of memory: the test did not exercise the back-off"
    # Passes that ran out of memory shrink (the chunk halves; a pass is min(chunk, points left)),
    # and once one fits, no later pass tries a larger chunk again.
    first_failure = failed[0]
    retries = calls[first_failure:failed[-1] + 1]
    assert retries == sorted(retries, reverse=True)
    after = calls[failed[-1] + 1:]
    assert after and max(after) == 4  # halving lands on the largest chunk that fits, not below it


def test_bad_arguments(cnn):
    ig = FundusIntegratedGradients(cnn)
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown method"):
        ig.explain(x, method="simpson")
    with pytest.raises(ValueError, match="unknown baseline"):
        ig.explain(x, baselines="nonsense")
    with pytest.raises(ValueError, match="completeness_tol"):
        ig.explain(x, completeness_tol=0)


@requires_cuda
def test_cuda_matches_cpu(cnn):
    x = torch.rand(3, 3, 16, 16)
    cpu = FundusIntegratedGradients(cnn).explain(x, target=1, completeness_tol=None, n_steps=16)
    gpu = FundusIntegratedGradients(cnn.cuda()).explain(
        x.cuda(), target=1, completeness_tol=None, n_steps=16)
    assert gpu.attributions.is_cuda
    assert torch.allclose(cpu.attributions, gpu.attributions.cpu(), atol=1e-4)
