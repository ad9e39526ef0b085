# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch

from medig import baselines as B
from tests.conftest import requires_cuda


def fundus_like(n: int = 2, size: int = 32, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (0.4 * size) ** 2).to(dtype)
    colour = torch.tensor([0.8, 0.4, 0.2], dtype=dtype).view(1, 3, 1, 1)
    torch.manual_seed(0)
    return (colour * disk + 0.1 * torch.rand(n, 3, size, size, dtype=dtype) * disk).clamp(0, 1)


@pytest.mark.parametrize("name", ["black", "blur", "uniform", "gaussian", "fov_mean"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_named_baseline_shape_dtype_range_reproducible(name, dtype):
    x = fundus_like(dtype=dtype)
    fn = B.get_baseline(name)
    b1, b2 = fn(x), fn(x.clone())
    assert b1.shape == x.shape and b1.dtype == dtype and b1.device == x.device
    assert b1.min() >= 0 and b1.max() <= 1
    assert torch.equal(b1, b2)  # deterministic / seeded


def test_noise_baselines_depend_on_seed_not_on_batch():
    x = fundus_like(4)
    assert not torch.equal(B.uniform(x, seed=0), B.uniform(x, seed=1))
    # the same image gets the same baseline whatever batch it is in
    assert torch.equal(B.uniform(x)[2], B.uniform(x[2:3])[0])
    assert torch.equal(B.gaussian(x)[1], B.gaussian(x[1:2])[0])
    assert (B.gaussian(x) - x).abs().mean() > 0.01


def test_blur_removes_fine_structure():
    x = fundus_like(1, 64)
    x[..., 30:32, 30:32] = 0.0  # a "microaneurysm"
    b = B.blur(x)
    assert b[..., 30:32, 30:32].mean() > 0.3
    assert abs(b.mean() - x.mean()) < 0.05


def test_fov_mean_is_featureless_disk():
    x = fundus_like(2, 48)
    mask = x.sum(1, keepdim=True) > 0.1
    b = B.fov_mean(x, mask=mask)
    inside = b[0, :, 24, 24]
    assert torch.allclose(b[0, :, 20, 28], inside)
    assert torch.allclose(inside, (x[0] * mask[0]).sum((1, 2)) / mask[0].sum(), atol=1e-6)
    assert torch.all(b[:, :, 0, 0] == 0)
    assert torch.allclose(B.fov_mean(x), b, atol=0.05)  # default mask from medig.preprocess


def test_reference_set_resizes_and_averages():
    refs = torch.rand(3, 3, 16, 16)
    x = fundus_like(2, 32)
    resolved, names = B.make_baselines(B.ReferenceSet(refs), x)
    assert len(resolved) == 3 and names == ["reference[0]", "reference[1]", "reference[2]"]
    assert all(r.shape == x.shape for r in resolved)
    assert torch.equal(resolved[1][0], resolved[1][1])
    u8 = B.ReferenceSet((refs * 255).to(torch.uint8))
    assert u8.images.dtype == torch.float32 and u8.images.max() <= 1


def test_registry():
    B.register_baseline("grey_test", lambda x: torch.full_like(x, 0.5))
    try:
        assert "grey_test" in B.available_baselines()
        resolved, names = B.make_baselines(["grey_test", 0.0], fundus_like())
        assert names == ["grey_test", "constant(0)"] and resolved[1] == 0.0
        with pytest.raises(ValueError, match="already registered"):
            B.register_baseline("grey_test", lambda x: x)
    finally:
        B._REGISTRY.pop("grey_test")
    with pytest.raises(ValueError, match="known baselines"):
        B.get_baseline("nope")


@requires_cuda
@pytest.mark.parametrize("name", ["black", "blur", "uniform", "gaussian", "fov_mean"])
def test_cuda_baselines_match_cpu(name):
    x = fundus_like()
    cpu = B.get_baseline(name)(x)
    gpu = B.get_baseline(name)(x.cuda())
    assert gpu.is_cuda
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-5)
