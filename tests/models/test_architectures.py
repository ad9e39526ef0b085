# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch

from medig.models import ModelArgumentError, ModelLoadError
from medig.models.architectures import (
    build_architecture,
    count_outputs,
    guess_num_classes,
    required_input_size,
    skipped_init,
)


def test_torchvision_with_constructor_arguments():
    vit = build_architecture("torchvision:vit_b_16", 5, {"image_size": 32}, initialise=False)
    assert required_input_size(vit) == 32
    assert count_outputs(vit, 32) == 5
    assert required_input_size(build_architecture("torchvision:resnet18", 3,
                                                  initialise=False)) is None


def test_unknown_or_downloading_arguments_are_usage_errors():
    with pytest.raises(ModelArgumentError, match=r"torchvision:resnet18: model argument 'depth' "
                                                 r"is not accepted"):
        build_architecture("torchvision:resnet18", 5, {"depth": 3})
    with pytest.raises(ModelArgumentError, match="would download weights"):
        build_architecture("torchvision:resnet18", 5, {"weights": "IMAGENET1K_V1"})
    with pytest.raises(ModelLoadError, match="cannot build the model"):
        build_architecture("torchvision:no_such_net", 5)


def test_skipped_init_draws_nothing_and_restores_init():
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    with skipped_init():
        model = build_architecture("torchvision:resnet18", 5, initialise=False)
    after = torch.rand(1)
    assert torch.equal(before, after)  # no random numbers were drawn for the parameters
    torch.manual_seed(1)
    a = torch.nn.Linear(3, 3).weight.detach().clone()
    torch.manual_seed(1)
    assert torch.equal(a, torch.nn.Linear(3, 3).weight)  # nn.init works again afterwards
    assert model.fc.out_features == 5


def test_guess_num_classes_reads_the_last_matrix():
    sd = build_architecture("torchvision:resnet18", 7).state_dict()
    assert guess_num_classes(sd) == 7


def test_timm_architectures_never_download():
    timm = pytest.importorskip("timm")
    model = build_architecture("timm:efficientnet_b0", 5)
    assert model.num_classes == 5 and count_outputs(model, 32) == 5
    vit = build_architecture("timm:vit_tiny_patch16_224", 5, {"img_size": 32})
    assert required_input_size(vit) == 32
    with pytest.raises(ModelArgumentError, match="would download weights"):
        build_architecture("timm:efficientnet_b0", 5, {"pretrained": True})
    with pytest.raises(ModelLoadError, match="hub and local-dir model names"):
        build_architecture("timm:hf-hub:timm/resnet18.a1_in1k", 5)
    with pytest.raises(ModelLoadError, match="timm has no architecture 'efficientnet_b99'"):
        build_architecture("timm:efficientnet_b99", 5)
    assert timm.__version__


def test_timm_missing_is_a_one_line_hint(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise ImportError("no timm")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(ModelLoadError, match=r'timm is not installed; pip install "medig\[timm\]"'):
        build_architecture("timm:efficientnet_b0", 5)
