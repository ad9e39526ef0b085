# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medig.checks import deletion_curve
from medig.checks.deletion import LogOdds, default_patch, faithfulness_output


class RegionModel(nn.Module):
    """Reads one region only: output = mean brightness of rows/cols 8..15 (and its negative)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, :, 8:16, 8:16].mean(dim=(1, 2, 3))
        return torch.stack([s, -s], dim=1)


class Linear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(dim=1, keepdim=True)


def _mark(top: int, left: int, n: int = 3) -> torch.Tensor:
    a = torch.zeros((n, 1, 32, 32))
    a[:, :, top:top + 8, left:left + 8] = 1.0
    return a


@pytest.mark.parametrize("patch", [1, 4])
def test_deleting_the_region_the_model_reads_kills_its_output_at_once(patch: int) -> None:
    x = 0.5 + 0.5 * torch.rand((3, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    right = deletion_curve(RegionModel(), x, _mark(8, 8), 0, steps=16, fill=0.0, patch=patch)
    # The region is 64 of 1024 pixels, the size of one step: all gone at step 1.
    assert torch.allclose(right.curve[:, 1:], torch.zeros_like(right.curve[:, 1:]))
    assert (right.curve[:, 0] > 0.5).all()
    assert (right.faithfulness > 0.3).all()
    wrong = deletion_curve(RegionModel(), x, _mark(20, 20), 0, steps=16, fill=0.0, patch=patch)
    torch.testing.assert_close(wrong.curve[:, 1], wrong.curve[:, 0])  # another region went first
    assert (wrong.faithfulness <= 0).all()
    assert torch.equal(right.random_curve, wrong.random_curve)  # same seeded random orders


def test_curve_of_a_linear_model_matches_a_hand_computed_one() -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn((1, 3, 8, 8), generator=g, dtype=torch.float64)
    x = torch.rand((2, 3, 8, 8), generator=g, dtype=torch.float64)
    attributions = torch.randn((2, 1, 8, 8), generator=g, dtype=torch.float64)
    result = deletion_curve(Linear(w), x, attributions, None, steps=4, fill=0.0, patch=1)
    for i in range(2):
        contribution = (x[i] * w[0]).sum(dim=0).flatten().numpy()  # per pixel, fill 0
        order = np.argsort(-attributions[i, 0].flatten().numpy(), kind="stable")
        removed = np.concatenate([[0.0], np.cumsum(contribution[order])])[::16]
        expected = contribution.sum() - removed
        np.testing.assert_allclose(result.curve[i].numpy(), expected, atol=1e-10)
        auc = np.trapezoid(expected, dx=0.25)
        assert result.auc[i].item() == pytest.approx(auc)
    both = torch.cat([result.curve, result.random_curve], dim=1)
    span = both.max(dim=1).values - both.min(dim=1).values
    torch.testing.assert_close(result.faithfulness, (result.random_auc - result.auc) / span)


def test_only_the_field_of_view_is_removed_and_ends_are_shared() -> None:
    class Outside(nn.Module):
        def forward(self, x):
            return x[:, :, :2, :2].sum(dim=(1, 2, 3))[:, None]

    x = torch.rand((2, 3, 16, 16))
    fov = torch.zeros((2, 1, 16, 16), dtype=torch.bool)
    fov[:, :, 4:, 4:] = True
    result = deletion_curve(Outside(), x, torch.rand((2, 3, 16, 16)), None, fov=fov, steps=5,
                            fill=0.0, patch=1)
    assert torch.allclose(result.curve, result.curve[:, :1].expand_as(result.curve))
    assert torch.isnan(result.faithfulness).all()  # the output never moved: not measurable
    result = deletion_curve(RegionModel(), x, torch.rand((2, 3, 16, 16)), 0, fov=fov, steps=5)
    torch.testing.assert_close(result.curve[:, [0, -1]], result.random_curve[:, [0, -1]])


def test_forward_passes_are_batched_and_counted() -> None:
    calls: list[int] = []

    class Counting(RegionModel):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    x = torch.rand((3, 3, 32, 32))
    deletion_curve(Counting(), x, torch.rand((3, 3, 32, 32)), 0, steps=10, random_orders=3,
                   internal_batch_size=50)
    assert sum(calls) == 3 * (2 + 9 * 4)  # shared ends, 9 inner steps x (map + 3 random orders)
    assert max(calls) == 50


def test_random_orders_are_seeded_and_do_not_depend_on_the_batch() -> None:
    x = 0.5 + 0.5 * torch.rand((4, 3, 32, 32), generator=torch.Generator().manual_seed(2))
    a = torch.rand((4, 3, 32, 32), generator=torch.Generator().manual_seed(3))
    whole = deletion_curve(RegionModel(), x, a, 0, seed=5)
    alone = deletion_curve(RegionModel(), x[2:3], a[2:3], 0, seed=5)
    torch.testing.assert_close(whole.curve[2:3], alone.curve)
    torch.testing.assert_close(whole.random_curve[2:3], alone.random_curve)
    other = deletion_curve(RegionModel(), x, a, 0, seed=6)
    assert not torch.equal(other.random_curve, whole.random_curve)


def test_default_fill_is_the_blur_baseline_and_default_patch_scales_with_size() -> None:
    from medig.baselines import blur

    x = torch.rand((1, 3, 32, 32))

    class Mean(nn.Module):
        def forward(self, x):
            return x.mean(dim=(1, 2, 3))[:, None]

    result = deletion_curve(Mean(), x, torch.rand((1, 3, 32, 32)), None)
    assert result.curve[0, -1].item() == pytest.approx(blur(x).mean().item(), rel=1e-5)
    assert result.fill == "blur"
    assert (default_patch(256, 256), default_patch(512, 512), default_patch(32, 32)) == (4, 8, 1)


def test_log_odds_do_not_saturate_like_the_probability() -> None:
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3, 2) * 40.0)
        model.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.9, 0.0], [0.0, 0.1]])
    p = torch.softmax(model(x).double(), dim=1)
    lo = LogOdds(model)(x)
    torch.testing.assert_close(lo[2], torch.log(p[2] / (1 - p[2])))
    p32 = torch.softmax(model(x), dim=1)
    assert p32[0, 0] == p32[1, 0] == 1.0  # float32 probability: saturated, tied
    assert lo[0, 0] > lo[1, 0]  # log-odds: still ordered
    assert faithfulness_output(model, "logit") is model


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        deletion_curve(RegionModel(), torch.rand(3, 32, 32), torch.rand(3, 32, 32), 0)
    with pytest.raises(ValueError, match="steps and random_orders"):
        deletion_curve(RegionModel(), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), 0,
                       random_orders=0)


def test_agrees_with_quantus_pixel_flipping() -> None:
    """Quantus's PixelFlipping with the same order, fill and step sizes gives the same curve.

    Quantus flips array entries in order of decreasing attribution, ``features_in_step`` at a
    time, and returns the output after each step (not the unperturbed one): medig's curve from
    its second point. Definitional differences: Quantus flips array entries (colour channels
    separately), medig whole pixels (channel-summed map) or patches, of the field of view only;
    Quantus's "black" is the image minimum, medig's fill a value, tensor or baseline (default
    the blurred image); Quantus reports the curve, medig also its comparison with random orders.
    """
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(4)
    # One channel: Quantus's features are array entries, medig's are pixels.
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 2)).eval()
    x = torch.rand((3, 1, 8, 8), generator=g)
    x[:, :, 0, 0] = 0.0  # the minimum, Quantus's "black"
    a = torch.randn((3, 1, 8, 8), generator=g)  # distinct values: no ties to break
    y = np.array([0, 1, 1])
    ours = deletion_curve(model, x, a, torch.as_tensor(y), steps=8, fill=0.0, patch=1)
    metric = quantus.PixelFlipping(features_in_step=8, perturb_baseline="black",
                                   abs=False, normalise=False, disable_warnings=True)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=a.numpy(),
                    softmax=False, device="cpu", channel_first=True)
    np.testing.assert_allclose(ours.curve[:, 1:].numpy(), np.array(theirs), rtol=1e-5,
                               atol=1e-6)
