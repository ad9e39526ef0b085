# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import medig
from medig.models import DEMO_WEIGHTS, DemoNet, LoadedModel, load_model
from medig.utils import sha256_file

# Never used in training (1000-1039), the training check (5000) or examples/evaluate (90210-90217).
FRESH_SEED = 31337


def test_shipped_weights_are_a_plain_state_dict():
    state = torch.load(DEMO_WEIGHTS, map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    assert DEMO_WEIGHTS.stat().st_size < 2 * 1024 * 1024
    meta = json.loads(DEMO_WEIGHTS.with_suffix(".json").read_text())
    assert meta["class_names"][1] == "referable DR" and meta["input_size"] == 256
    assert len(meta["mean"]) == len(meta["std"]) == 3 and min(meta["std"]) > 0
    DemoNet(num_classes=2).load_state_dict(state)  # strict: the architecture matches


def test_demonet_shapes_and_no_max_pooling():
    net = DemoNet().eval()
    for n in (1, 3):
        assert net(torch.rand(n, 3, 64, 64)).shape == (n, 2)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)) for m in net.modules())
    with pytest.raises(ValueError):
        DemoNet(widths=(8, 16))


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return medig.load_model("demo")


def test_load_demo(demo):
    model, names = demo
    assert isinstance(demo, LoadedModel)
    assert names == ["no referable DR", "referable DR"] and demo.input_size == 256
    assert demo.weights_sha256 == sha256_file(DEMO_WEIGHTS) and demo.spec == "demo"
    assert not model.training and not any(m.training for m in model.modules())
    # Normalisation is folded in: a pixel-space black image is not the network's zero input.
    raw = DemoNet().eval()
    raw.load_state_dict(torch.load(DEMO_WEIGHTS, weights_only=True))
    black = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(model(black), raw(black))
    assert load_model is medig.load_model


@pytest.mark.slow
def test_demo_model_accuracy_on_fresh_images(demo):
    from medig.preprocess import FundusPreprocess
    from medig.synthetic import generate

    images, _, labels = generate(64, size=256, seed=FRESH_SEED)
    with torch.no_grad():
        x, _ = FundusPreprocess(size=256)(images)
        pred = demo.model(x).argmax(1)
    assert 16 < int(labels.sum()) < 48
    accuracy = float((pred == labels).float().mean())
    assert accuracy >= 0.9, accuracy
