# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import medig
from medig.checks import map_similarity, model_stages, randomisation_test, thresholds
from medig.preprocess import FundusPreprocess, fov_mask
from medig.synthetic import generate
from tests.conftest import small_cnn


def edge_map(_model: nn.Module, x: torch.Tensor, _target: torch.Tensor) -> torch.Tensor:
    """An "explainer" that ignores the model: the image's edges."""
    grey = x.mean(dim=1, keepdim=True)
    out = torch.zeros_like(grey)
    out[..., :, 1:] += (grey[..., :, 1:] - grey[..., :, :-1]).abs()
    out[..., 1:, :] += (grey[..., 1:, :] - grey[..., :-1, :]).abs()
    return out


def intensity(_model: nn.Module, x: torch.Tensor, _target: torch.Tensor) -> torch.Tensor:
    return x


def gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(x).gather(1, target[:, None]).sum()
        (grad,) = torch.autograd.grad(out, x)
    return grad


@pytest.fixture(scope="module")
def fundus() -> tuple[torch.Tensor, torch.Tensor]:
    raw = generate(4, 256, seed=31337)[0]
    return FundusPreprocess(256)(list(raw))


@pytest.fixture(scope="module")
def demo() -> nn.Module:
    return medig.load_model("demo").model.eval()


def test_model_independent_explainers_fail(fundus, demo) -> None:
    x, fov = fundus
    target = torch.ones(4, dtype=torch.long)
    for explain in (edge_map, intensity):
        result = randomisation_test(demo, x, target, explain=explain, fov=fov)
        assert result.passed is False and result.ran
        assert torch.allclose(result.similarity, torch.ones_like(result.similarity))
        assert torch.allclose(result.ssim, torch.ones_like(result.ssim))


def test_medig_ig_on_the_demo_model_passes(fundus, demo) -> None:
    x, fov = fundus
    with torch.no_grad():
        target = demo(x).argmax(dim=1)
    result = randomisation_test(demo, x, target, fov=fov)
    assert result.stages == ["model.fc", "model.stages.3", "model.stages.2", "model.stages.1"]
    assert result.similarity.shape == (4, 4) and result.ssim.shape == (4, 4)
    assert result.passed is True
    assert result.stage_similarity[-1] < thresholds.RANDOMISATION_MAX_SIMILARITY
    assert result.stage_similarity[0] > result.stage_similarity[-1]  # the cascade destroys more


@pytest.mark.slow
def test_default_arguments_give_the_audits_verdict_on_a_fundus(fundus, demo) -> None:
    # Without a field of view the black corners' tied cells dominate the ranks, and IG on the
    # demo model would fail; by default the check finds the field of view as the audit does.
    x, fov = fundus  # the audit's preprocessing and its field of view
    with torch.no_grad():
        target = demo(x).argmax(dim=1)
    default = randomisation_test(demo, x, target)
    audit = randomisation_test(demo, x, target, fov=fov)
    assert default.passed is True and audit.passed is True
    assert default.stage_similarity[-1] == pytest.approx(audit.stage_similarity[-1], abs=0.02)
    detected = randomisation_test(demo, x, target, fov=fov_mask(x))
    assert torch.equal(default.similarity, detected.similarity)  # "auto" is that detector
    # The whole frame, explicitly or as None, is the behaviour before "auto": it fails.
    frame = randomisation_test(demo, x, target, fov=torch.ones_like(fov))
    assert frame.passed is False
    assert frame.stage_similarity[-1] > thresholds.RANDOMISATION_MAX_SIMILARITY
    assert torch.equal(frame.similarity, randomisation_test(demo, x, target, fov=None).similarity)


def test_the_users_model_is_never_touched_and_the_cascade_accumulates() -> None:
    model = small_cnn(seed=3).train()  # a training-mode model: the copy is put in eval mode
    before = copy.deepcopy(model.state_dict())
    stages = model_stages(model)
    assert stages == ["10", "6", "3", "0"]
    seen: list[list[str]] = []

    def record(m: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert m is not model and not m.training
        modules = dict(m.named_modules())
        seen.append([s for s in stages if not torch.equal(modules[s].weight, model.get_submodule(
            s).weight)])
        return gradient(m, x, t)

    x = torch.rand((2, 3, 16, 16))
    randomisation_test(model, x, 0, explain=record)
    assert seen == [[], ["10"], ["10", "6"], ["10", "6", "3"], ["10", "6", "3", "0"]]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and model.training


def test_same_seed_same_result_and_explicit_stages() -> None:
    model = small_cnn(seed=4)
    x = torch.rand((3, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    a = randomisation_test(model, x, 1, explain=gradient, stages=["10"], cell=2, seed=0)
    b = randomisation_test(model, x, 1, explain=gradient, stages=["10"], cell=2, seed=0)
    c = randomisation_test(model, x, 1, explain=gradient, stages=["10"], cell=2, seed=1)
    assert a.stages == ["10"] and torch.equal(a.similarity, b.similarity)
    assert not torch.equal(a.similarity, c.similarity)
    with pytest.raises(ValueError, match="not found"):
        randomisation_test(model, x, 1, explain=gradient, stages=["head"])


def test_stage_discovery_looks_through_wrappers_and_expands_containers() -> None:
    import torchvision

    resnet = medig.with_normalization(torchvision.models.resnet18(num_classes=2), [0.5] * 3,
                                      [0.2] * 3)
    assert model_stages(resnet) == ["model.fc", "model.layer4.1", "model.layer4.0",
                                    "model.layer3.1"]
    assert model_stages(resnet, None)[-3:] == ["model.layer1.0", "model.bn1", "model.conv1"]
    assert model_stages(nn.Linear(3, 2)) == []


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, still met
def test_scripted_and_exported_models_are_not_run() -> None:
    model = small_cnn(seed=5)
    x = torch.rand((2, 3, 16, 16))
    scripted = torch.jit.trace(model, x)
    result = randomisation_test(scripted, x, 0, explain=gradient)
    assert result.passed is None and not result.ran and "TorchScript" in result.reason
    exported = torch.export.export(model, (x,)).module()
    result = randomisation_test(nn.Sequential(exported), x, 0, explain=gradient)
    assert result.passed is None and "torch.export" in result.reason
    result = randomisation_test(nn.ReLU(), x, 0, explain=gradient)
    assert result.passed is None and "no accessible parameters" in result.reason


def test_similarity_matches_quantus_and_mprt_agrees() -> None:
    """medig's similarity with single-pixel cells is Quantus's Spearman of |attribution|; its
    cascade over Quantus's layers gives the same verdicts as Quantus's MPRT.

    Definitional differences: MPRT randomises every layer with ``reset_parameters`` (leaf
    layers) and compares pixel maps; medig randomises blocks (stages) and compares maps pooled to
    cells, which keeps IG's pixel noise from dominating; MPRT reseeds each layer with seed + 1,
    medig each stage with its own seed, so the random weights (and exact values) differ.
    """
    quantus = pytest.importorskip("quantus")
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn((3, 1, 8, 8), generator=g), torch.randn((3, 1, 8, 8), generator=g)
    b = b + a
    ours, _ = map_similarity(a, b, cell=1)
    theirs = quantus.similarity_func.correlation_spearman(
        a.abs().reshape(3, -1).numpy(), b.abs().reshape(3, -1).numpy(), batched=True)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-10)

    model = small_cnn(seed=7)
    x = torch.rand((4, 3, 16, 16), generator=g)
    y = np.array([0, 1, 0, 1])
    layers = [n for n, m in model.named_modules() if hasattr(m, "reset_parameters")][::-1]

    def numpy_explain(explain):
        def run(model, inputs, targets, **_):
            t = torch.as_tensor(targets).long()
            return explain(model, torch.as_tensor(inputs), t).sum(dim=1, keepdim=True).numpy()
        return run

    for explain, expected in ((edge_map, False), (gradient, True)):
        mprt = quantus.MPRT(layer_order="top_down", disable_warnings=True)
        scores = mprt(model=model, x_batch=x.numpy(), y_batch=y, a_batch=None, softmax=False,
                      device="cpu", channel_first=True, explain_func=numpy_explain(explain))
        last = float(np.median(scores[layers[-1]]))
        mine = randomisation_test(model, x, torch.as_tensor(y), explain=explain, stages=layers,
                                  cell=1)
        assert (last < thresholds.RANDOMISATION_MAX_SIMILARITY) is expected
        assert mine.passed is expected
