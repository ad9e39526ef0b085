# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import json
import pickle
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from medig.models import LoadedModel, ModelLoadError, load_model
from medig.utils import sha256_file

NAMES = ["healthy", "referable"]
MEAN, STD = [0.5, 0.25, 0.1], [0.2, 0.1, 0.05]


def tiny() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture()
def x() -> torch.Tensor:
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_export_program_with_sidecar_json_folds_normalisation(tmp_path, x):
    model = tiny()
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path / "net.pt2"
    torch.export.save(ep, path)
    (tmp_path / "net.json").write_text(json.dumps(
        {"class_names": NAMES, "input_size": 16, "mean": MEAN, "std": STD}))
    loaded = load_model(path)
    assert isinstance(loaded, LoadedModel) and isinstance(loaded, tuple) and len(loaded) == 2
    net, names = loaded
    assert names == NAMES and loaded.class_names == NAMES and loaded.input_size == 16
    assert loaded.weights_sha256 == sha256_file(path) and loaded.spec == str(path)
    assert not net.training
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(_normalised(x)))
        assert net(x[:1]).shape == (1, 2)  # dynamic batch survives loading


def test_torchscript_with_explicit_class_names(tmp_path, x):
    model = tiny()
    path = tmp_path / "net.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, x), str(path))
    loaded = load_model(path, class_names=NAMES, input_size=16)
    assert loaded.class_names == NAMES and loaded.input_size == 16
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))  # no JSON: no normalisation


def test_torchvision_resnet18_state_dict(tmp_path, x):
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None, num_classes=2).eval()
    weights = tmp_path / "resnet.pt"
    torch.save(ref.state_dict(), weights)
    loaded = load_model("torchvision:resnet18", weights=weights, class_names=NAMES)
    assert loaded.weights_sha256 == sha256_file(weights)
    assert not loaded.model.training
    xb = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(xb), ref(xb))


def test_monai_network_with_sidecar_kwargs(tmp_path):
    from monai.networks.nets import DenseNet

    torch.manual_seed(0)
    small = {"init_features": 4, "growth_rate": 4, "block_config": [1, 1], "bn_size": 2}
    ref = DenseNet(spatial_dims=2, in_channels=3, out_channels=3, **small).eval()
    weights = tmp_path / "densenet.pth"
    torch.save(ref.state_dict(), weights)
    (tmp_path / "densenet.pth.json").write_text(json.dumps(
        {"class_names": ["a", "b", "c"], "kwargs": small, "mean": MEAN, "std": STD}))
    loaded = load_model("monai:DenseNet", weights=weights)
    assert loaded.class_names == ["a", "b", "c"] and loaded.input_size is None
    xb = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(xb), ref(_normalised(xb)))


@pytest.fixture()
def factory_module(tmp_path, monkeypatch) -> str:
    (tmp_path / "medig_test_factory.py").write_text(textwrap.dedent("""
        from torch import nn

        def make(width=4):
            return nn.Sequential(nn.Conv2d(3, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(width, 2))

        def not_a_module():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "medig_test_factory"


def test_factory_with_and_without_weights(tmp_path, factory_module, x):
    bare = load_model(f"{factory_module}:make", class_names=NAMES, model_kwargs={"width": 6})
    assert bare.weights_sha256 is None and bare.model[0].out_channels == 6

    import medig_test_factory

    torch.manual_seed(3)
    ref = medig_test_factory.make(width=5).eval()
    weights = tmp_path / "w.pt"
    # A training checkpoint saved from DataParallel: nested and "module."-prefixed keys.
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}},
               weights)
    (tmp_path / "w.json").write_text(json.dumps({"class_names": NAMES, "kwargs": {"width": 5}}))
    loaded = load_model(f"{factory_module}:make", weights=weights)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), ref(x))


def test_arguments_override_sidecar(tmp_path, factory_module):
    weights = tmp_path / "w.pt"
    import medig_test_factory

    torch.save(medig_test_factory.make().state_dict(), weights)
    (tmp_path / "w.json").write_text(json.dumps({"class_names": ["x", "y"], "input_size": 99}))
    loaded = load_model(f"{factory_module}:make", weights=weights, class_names=NAMES,
                        input_size=64)
    assert loaded.class_names == NAMES and loaded.input_size == 64


class _Boom:
    """Unpickling this would create a file: proof that medig never unpickles."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_pickled_objects_are_refused_and_never_executed(tmp_path):
    canary = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(2, 2), "payload": _Boom(str(canary))}, evil)
    full = tmp_path / "full.pt"
    torch.save(tiny(), full)
    for kwargs in ({"spec": "torchvision:resnet18", "weights": evil, "class_names": NAMES},
                   {"spec": full, "class_names": NAMES},
                   {"spec": "torchvision:resnet18", "weights": full, "class_names": NAMES}):
        with pytest.raises(ModelLoadError, match="is a pickled object, not a state dict; medig "
                           "only loads weights_only files"):
            load_model(**kwargs)
    assert not canary.exists()
    with pytest.raises(pickle.UnpicklingError):  # what the message above rewrites
        torch.load(full, weights_only=True)


def test_bare_state_dict_as_spec_explains_what_is_missing(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(tiny().state_dict(), path)
    with pytest.raises(ModelLoadError, match="without an architecture"):
        load_model(path, class_names=NAMES)


@pytest.mark.parametrize("kwargs, match", [
    ({"spec": "no/such/model.pt2"}, "no such model file or spec"),
    ({"spec": "torchvision:resnet18", "class_names": NAMES}, "weights=... .* is required"),
    ({"spec": "torchvision:resnet18", "weights": "missing.pt"}, "weights file not found"),
    ({"spec": "torchvision:no_such_arch", "weights": None, "class_names": NAMES}, "required"),
    ({"spec": "medig_no_such_module:make", "class_names": NAMES}, "cannot build"),
])
def test_bad_specs(kwargs, match):
    with pytest.raises(ModelLoadError, match=match):
        load_model(**kwargs)


def test_missing_class_names_become_generic_with_one_warning(factory_module, caplog):
    # Class names are optional: the outputs are counted and named "class k".
    with caplog.at_level("WARNING", logger="medig"):
        loaded = load_model(f"{factory_module}:make")
    assert loaded.class_names == ["class 0", "class 1"]
    assert loaded.metadata.sources["class_names"] == "generic (none given)"
    assert [r.message for r in caplog.records if "class names" in r.message] == [
        f"{factory_module}:make: no class names found (arguments, JSON file or checkpoint); "
        "using 'class 0' to 'class 1'"]


def test_bad_factory(factory_module):
    with pytest.raises(ModelLoadError, match="not an nn.Module"):
        load_model(f"{factory_module}:not_a_module", class_names=NAMES)


def test_weights_that_do_not_fit(tmp_path):
    weights = tmp_path / "tiny.pt"
    torch.save(tiny().state_dict(), weights)
    with pytest.raises(ModelLoadError, match="do not fit the architecture"):
        load_model("torchvision:resnet18", weights=weights, class_names=NAMES)
