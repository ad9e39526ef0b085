# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medig.models import ModelLoadError
from medig.models.checkpoint import (
    fit_state_dict,
    head_outputs,
    is_safetensors,
    read_checkpoint,
)


def net(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes))


def expected() -> dict[str, torch.Tensor]:
    return net().state_dict()


def test_safetensors_with_json_metadata(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file(net().state_dict(), str(path),
              metadata={"class_names": '["a", "b", "c"]', "note": "plain text"})
    ck = read_checkpoint(path)
    assert is_safetensors(path) and ck.format == "safetensors" and ck.location == ""
    assert ck.content == {"class_names": ["a", "b", "c"], "note": "plain text"}
    for k, v in net().state_dict().items():
        assert torch.equal(ck.state_dict[k], v)


@pytest.mark.parametrize("layout, location", [
    (lambda sd: sd, ""),
    (lambda sd: {"state_dict": sd, "epoch": 2}, "state_dict"),
    (lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {"state": {}}},
     "model_state_dict"),
    (lambda sd: {"model": sd, "classes": ["a", "b", "c"]}, "model"),
    (lambda sd: {"net": sd}, "net"),
    (lambda sd: {"model": {"state_dict": sd, "arch": "x"}}, "model.state_dict"),
])
def test_state_dict_found_where_training_code_puts_it(tmp_path, layout, location):
    path = tmp_path / "w.pt"
    torch.save(layout(net().state_dict()), path)
    ck = read_checkpoint(path)
    assert ck.location == location and ck.format == "torch"
    assert set(ck.state_dict) == set(net().state_dict())


def test_pickled_module_and_pickled_payload_are_refused_by_name(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(net(), whole)
    with pytest.raises(ModelLoadError, match=r"is a pickled object, not a state dict; medig only "
                       r"loads weights_only files \(it holds torch\.nn\.modules\.container\."
                       r"Sequential\)"):
        read_checkpoint(whole)
    beside = tmp_path / "beside.pt"
    torch.save({"model": net()}, beside)
    with pytest.raises(ModelLoadError, match="pickled object.*Sequential"):
        read_checkpoint(beside)


def test_no_state_dict_is_named(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "classes": ["a"]}, path)
    with pytest.raises(ModelLoadError, match="no state dict found.*holds keys epoch, classes"):
        read_checkpoint(path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="garbage.pt: cannot read weights"):
        read_checkpoint(garbage)


def test_lightning_prefix_is_stripped_and_siblings_left_out():
    sd = {f"model.{k}": v for k, v in expected().items()}
    sd["criterion.weight"] = torch.ones(3)  # a loss module of the LightningModule
    fitted = fit_state_dict(sd, expected(), "w.ckpt", "spec")
    assert fitted.prefix == "model." and fitted.ignored == []
    assert set(fitted.state_dict) == set(expected())


@pytest.mark.parametrize("prefix", ["net.", "module.", "model.module.", "model._orig_mod.",
                                    "student.backbone."])
def test_any_wrapper_prefix_that_fits(prefix):
    sd = {f"{prefix}{k}": v for k, v in expected().items()}
    assert fit_state_dict(sd, expected(), "w", "spec").prefix == prefix


def test_keys_that_fit_as_stored_are_not_stripped():
    # The architecture's own keys start with "model." here: stripping would break them.
    wrapped = nn.Module()
    wrapped.model = net()
    sd = wrapped.state_dict()
    fitted = fit_state_dict(sd, sd, "w", "spec")
    assert fitted.prefix == "" and set(fitted.state_dict) == set(sd)


def test_wrapper_name_preferred_over_an_ema_copy():
    sd = {**{f"ema_model.{k}": v for k, v in expected().items()},
          **{f"model.{k}": v + 1 for k, v in expected().items()}}
    fitted = fit_state_dict(sd, expected(), "w", "spec")
    assert fitted.prefix == "model."
    assert torch.equal(fitted.state_dict["5.bias"], expected()["5.bias"] + 1)


def test_counters_may_be_missing_or_extra():
    sd = {k: v for k, v in expected().items() if not k.endswith("num_batches_tracked")}
    sd["0.total_ops"] = torch.zeros(1)  # thop's profiling buffers
    fitted = fit_state_dict(sd, expected(), "w", "spec")
    assert fitted.ignored == ["0.total_ops"]
    model = net()
    model.load_state_dict(fitted.state_dict, strict=False)


def test_prefix_that_fits_nothing_is_refused_with_the_closest():
    sd = {f"encoder.{k}": v for k, v in expected().items() if not k.startswith("5.")}
    with pytest.raises(ModelLoadError) as info:
        fit_state_dict(sd, expected(), "w.ckpt", "torchvision:x")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("w.ckpt: the weights do not fit the architecture torchvision:x: "
                              "no key prefix makes them fit (closest: prefix 'encoder.', 7 of 9 "
                              "tensors match; missing 5.weight, 5.bias (2))")


def test_extra_parameters_under_the_prefix_are_refused():
    # e.g. a deeper network than the architecture asked for: loading its first layers silently
    # would audit another model.
    sd = {f"model.{k}": v for k, v in expected().items()}
    sd["model.6.weight"] = torch.zeros(2, 3)
    with pytest.raises(ModelLoadError, match=r"unexpected 6\.weight \(1\)"):
        fit_state_dict(sd, expected(), "w", "spec")


def test_head_of_other_size_is_named_with_both_shapes():
    sd = net(classes=5).state_dict()
    with pytest.raises(ModelLoadError, match=r"shape of 5\.weight is \[5, 4\] in the file, "
                                             r"\[3, 4\] in the model"):
        fit_state_dict(sd, expected(), "w", "spec")
    assert head_outputs({f"model.{k}": v for k, v in sd.items()}, expected()) == 5
    assert head_outputs(expected(), expected()) is None


def test_half_precision_weights_load_into_float_model(tmp_path):
    from safetensors.torch import save_file

    ref = net()
    path = tmp_path / "half.safetensors"
    save_file({k: (v.half() if v.is_floating_point() else v) for k, v in ref.state_dict().items()},
              str(path))
    ck = read_checkpoint(path)
    model = net(classes=3)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    model.load_state_dict(fit_state_dict(ck.state_dict, model.state_dict(), path, "s").state_dict,
                          strict=False)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), ref.eval()(x), atol=1e-2, rtol=1e-2)
    assert np.isfinite(model[5].weight.detach().numpy()).all()


def test_sequential_head_gets_a_hint():
    # model.fc = nn.Sequential(nn.Dropout(0.3), nn.Linear(4, 3)) in the training code
    sd = {("5.1." + k[2:] if k.startswith("5.") else k): v for k, v in expected().items()}
    with pytest.raises(ModelLoadError, match=r"; the file's 5 is a Sequential \(5\.1\.weight\): "
                                             r"load it with a package.module:factory"):
        fit_state_dict(sd, expected(), "w", "spec")
