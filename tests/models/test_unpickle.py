# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import argparse
import os
import pathlib
import pickle

import numpy as np
import pytest
import torch

from medig.models.unpickle import Opaque, load_weights_only, opaque_names


class _Canary:
    """A custom class whose unpickling would create a file (via __setstate__)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __setstate__(self, state):  # never called by medig
        pathlib.Path(state["target"]).touch()
        self.__dict__.update(state)


class _Gadget:
    """A pickle that calls a function on load (getattr gadget for Path.touch)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


class _System:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_plain_checkpoint_needs_no_stand_ins(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3, "names": ["a", "b"]}, path)
    obj, stood_in = load_weights_only(path)
    assert stood_in == [] and obj["epoch"] == 3 and torch.equal(obj["state_dict"]["w"],
                                                                torch.ones(2))


def test_harmless_types_are_decoded_from_their_bytes(tmp_path):
    path = tmp_path / "hp.ckpt"
    torch.save({"hyper_parameters": {
        "mean": np.array([0.485, 0.456, 0.406], dtype=np.float32),
        "std": np.array([[0.229], [0.224], [0.225]]).T,  # 2-D, float64
        "big_endian": np.array([1, 2, 3], dtype=">i4"),
        "lr": np.float64(3e-4), "epochs": np.int64(30),
        "names": np.array(["none", "mild", "moderate"]),
        "data_dir": pathlib.PosixPath("/data/fundus"),
        "args": argparse.Namespace(image_size=512, classes=["a", "b"]),
    }}, path)
    obj, stood_in = load_weights_only(path)
    hp = obj["hyper_parameters"]
    assert "numpy.ndarray" in stood_in and "pathlib.PosixPath" in stood_in
    np.testing.assert_array_equal(hp["mean"], np.array([0.485, 0.456, 0.406], dtype=np.float32))
    assert hp["mean"].dtype == np.float32
    np.testing.assert_array_equal(hp["std"], np.array([[0.229, 0.224, 0.225]]))
    np.testing.assert_array_equal(hp["big_endian"], [1, 2, 3])
    assert hp["lr"] == 3e-4 and hp["epochs"] == 30
    assert hp["names"].tolist() == ["none", "mild", "moderate"]
    assert hp["data_dir"] == "/data/fundus"
    assert hp["args"] == {"image_size": 512, "classes": ["a", "b"]}
    assert opaque_names(obj) == []


def test_custom_classes_stay_inert_and_are_never_run(tmp_path):
    canary = tmp_path / "canary"
    path = tmp_path / "custom.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hp": {"cb": _Canary(str(canary))},
                "loss": torch.nn.CrossEntropyLoss()}, path)
    obj, stood_in = load_weights_only(path)
    assert not canary.exists()
    assert isinstance(obj["hp"]["cb"], Opaque) and obj["hp"]["cb"].state == {"target": str(canary)}
    assert isinstance(obj["loss"], Opaque)
    assert sorted(opaque_names(obj)) == sorted(["tests.models.test_unpickle._Canary",
                                                "torch.nn.modules.loss.CrossEntropyLoss"])
    assert sorted(stood_in) == sorted(opaque_names(obj))


@pytest.mark.parametrize("payload", [_Gadget, _System])
def test_code_calling_pickles_are_refused(tmp_path, payload):
    canary = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "x": payload(str(canary)) if payload is _Gadget
                else payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_weights_only(path)
    assert not canary.exists()
