# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: small deterministic models and a CUDA skip marker."""
from __future__ import annotations

import pytest
import torch
from torch import nn

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def small_cnn(seed: int = 0, classes: int = 2, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A small ReLU CNN with max-pooling, in eval mode (a stand-in for a fundus classifier)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(16, classes),
    )
    # Larger weights than the default init give outputs of order 1 and clearly non-linear paths.
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    return net.to(dtype).eval()


@pytest.fixture
def cnn() -> nn.Module:
    return small_cnn()


class ModelZoo:
    """Untrained torchvision (and timm) classifiers with 5 outputs, each saved in the forms of
    :mod:`tests.models.checkpoint_forms`, built on first use and shared by the session."""

    SIZE = 32  # small inputs keep transformers cheap on CPU

    def __init__(self, root) -> None:
        self.root = root
        self.models: dict[str, nn.Module] = {}
        self.paths: dict[tuple[str, str], object] = {}

    def model(self, spec: str) -> nn.Module:
        if spec not in self.models:
            from medig.models.architectures import build_architecture

            torch.manual_seed(0)
            kwargs = {"image_size": self.SIZE} if spec == "torchvision:vit_b_16" else {}
            from tests.models.checkpoint_forms import liven, quick_init

            model = build_architecture(spec, 5, kwargs, initialise=False)
            self.models[spec] = liven(quick_init(model))
        return self.models[spec]

    def path(self, spec: str, form: str):
        if (spec, form) not in self.paths:
            from tests.models.checkpoint_forms import save_form

            self.paths[spec, form] = save_form(self.model(spec), form, self.root,
                                               spec.replace(":", "_"), self.SIZE)
        return self.paths[spec, form]


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> ModelZoo:
    return ModelZoo(tmp_path_factory.mktemp("zoo"))
