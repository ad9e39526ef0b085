# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor, PILReader
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from medig import FundusIntegratedGradients
from medig.monai import (
    ComputeIntegratedGradients,
    ComputeIntegratedGradientsD,
    ComputeIntegratedGradientsd,
    ComputeIntegratedGradientsDict,
    PreprocessFundus,
    PreprocessFundusD,
    PreprocessFundusd,
    PreprocessFundusDict,
)
from tests.monai.conftest import SIZE

IG_OPTS = dict(completeness_tol=0.01, max_steps=64)


def _load(keys="image"):
    return [LoadImaged(keys, reader=PILReader(), image_only=True), EnsureChannelFirstd(keys)]


def test_aliases() -> None:
    assert PreprocessFundusD is PreprocessFundusDict is PreprocessFundusd
    assert ComputeIntegratedGradientsD is ComputeIntegratedGradientsDict \
        is ComputeIntegratedGradientsd


def test_dataloader_workers_batch_agrees_with_array_and_core(fundus_dir, model) -> None:
    files = sorted(fundus_dir.glob("*.png"))
    transform = Compose([
        *_load(),
        PreprocessFundusd("image", size=SIZE, reverse_indexing=True),
        ComputeIntegratedGradientsd("image", model, **IG_OPTS),
    ])
    data = [{"image": str(f), "label": k % 2} for k, f in enumerate(files)]
    loader = DataLoader(Dataset(data, transform), batch_size=2, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    batch = batches[0]
    images, masks, attr, stats = (batch["image"], batch["image_fov_mask"], batch["image_ig"],
                                  batch["image_ig_stats"])
    assert isinstance(images, MetaTensor) and images.shape == (2, 3, SIZE, SIZE)
    assert masks.shape == (2, 1, SIZE, SIZE) and masks.dtype == torch.bool
    assert isinstance(attr, MetaTensor) and attr.shape == images.shape
    assert [str(p) for p in images.meta["filename_or_obj"]] == [str(f) for f in files[:2]]
    assert attr.meta["filename_or_obj"] == images.meta["filename_or_obj"]
    assert images.meta["medig_fov_box"].shape == (2, 4)
    assert {k: v.shape for k, v in stats.items()} == {k: (2,) for k in stats}

    # The same file through the array transforms gives the same numbers...
    single = Compose(_load())({"image": str(files[1])})["image"]
    pre = PreprocessFundus(size=SIZE, reverse_indexing=True)(single)
    torch.testing.assert_close(pre.as_tensor(), images[1].as_tensor())
    torch.testing.assert_close(ComputeIntegratedGradients(model, **IG_OPTS)(pre).as_tensor(),
                               attr[1].as_tensor(), atol=1e-5, rtol=1e-4)
    # ...and the core API on the collated batch gives the same completeness figures.
    core = FundusIntegratedGradients(model).explain(images.as_tensor(), **IG_OPTS)
    for name in ("score", "baseline_score", "n_steps", "converged", "target"):
        torch.testing.assert_close(stats[name], getattr(core, name), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(attr.as_tensor(), core.attributions, atol=1e-5, rtol=1e-4)


def test_batched_dict_form_with_target_key(model) -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 3, SIZE, SIZE)
    label = torch.tensor([0, 1, 1])
    out = ComputeIntegratedGradientsd("img", model, target_key="label", attribution_keys="ig",
                                      stats_keys="ig_stats", **IG_OPTS)({"img": x, "label": label})
    core = FundusIntegratedGradients(model).explain(x, target=label, **IG_OPTS)
    assert torch.equal(out["ig_stats"]["target"], label)
    torch.testing.assert_close(out["ig"], core.attributions, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["ig_stats"]["delta"], core.delta)
    # The attributions of a converged image add up to F(x) - F(x').
    s = out["ig_stats"]
    ok = s["converged"]
    assert ok.any()
    torch.testing.assert_close(out["ig"].sum(dim=(1, 2, 3))[ok],
                               (s["score"] - s["baseline_score"])[ok], atol=1e-3, rtol=0.011)


def test_allow_missing_keys(fundus_dir, model) -> None:
    d = Compose(_load())({"image": str(fundus_dir / "img0.png")})
    with pytest.raises(KeyError):
        PreprocessFundusd(["image", "other"], size=SIZE, reverse_indexing=True)(d)
    out = PreprocessFundusd(["image", "other"], size=SIZE, reverse_indexing=True,
                            allow_missing_keys=True)(d)
    assert out["image"].shape == (3, SIZE, SIZE) and "other_fov_mask" not in out
    assert "image_fov_mask" in out
    out = ComputeIntegratedGradientsd(["image", "other"], model, allow_missing_keys=True,
                                      **IG_OPTS)(out)
    assert out["image_ig"].shape == (3, SIZE, SIZE) and "other_ig" not in out
    assert out["image_ig_stats"]["score"].ndim == 0


def test_output_keys_must_be_distinct(model) -> None:
    with pytest.raises(ValueError, match="one output key per input key"):
        PreprocessFundusd(["a", "b"], mask_keys="mask")
    with pytest.raises(ValueError, match="one output key per input key"):
        ComputeIntegratedGradientsd(["a", "b"], model, attribution_keys="ig")


def test_on_collated_metatensor_batch(fundus_dir, model) -> None:
    """As a post-transform on a DataLoader batch: metadata of the whole batch carried over."""
    transform = Compose([*_load(), PreprocessFundusd("image", size=SIZE, reverse_indexing=True)])
    data = [{"image": str(f)} for f in sorted(fundus_dir.glob("*.png"))[:3]]
    batch = next(iter(DataLoader(Dataset(data, transform), batch_size=3)))
    out = ComputeIntegratedGradientsd("image", model, **IG_OPTS)(batch)
    attr = out["image_ig"]
    assert isinstance(attr, MetaTensor) and attr.is_batch and attr.shape == (3, 3, SIZE, SIZE)
    assert attr.meta["filename_or_obj"] == batch["image"].meta["filename_or_obj"]
    torch.testing.assert_close(attr.affine, batch["image"].affine)
    assert out["image_ig_stats"]["relative_error"].shape == (3,)


def test_stats_carry_the_per_image_trust_checks(fundus_dir, model) -> None:
    """The checks of :func:`medig.checks.image_checks`, on the FOV mask of the data."""
    from medig.checks import image_checks

    transform = Compose([*_load(), PreprocessFundusd("image", size=SIZE, reverse_indexing=True)])
    data = [{"image": str(f)} for f in sorted(fundus_dir.glob("*.png"))[:2]]
    batch = next(iter(DataLoader(Dataset(data, transform), batch_size=2)))
    opts = dict(IG_OPTS, baselines=["black", "blur"])
    stats = ComputeIntegratedGradientsd("image", model, **opts)(batch)["image_ig_stats"]
    x, fov = batch["image"].as_tensor(), batch["image_fov_mask"].as_tensor()
    core = FundusIntegratedGradients(model, baselines=["black", "blur"]).explain(x, **IG_OPTS)
    expected = image_checks(model, x, core, fov)
    assert set(expected) <= set(stats)
    for name, value in expected.items():
        torch.testing.assert_close(stats[name], value, atol=1e-4, rtol=1e-3)
    single = ComputeIntegratedGradientsd("image", model, **opts)(
        {"image": batch["image"][0], "image_fov_mask": batch["image_fov_mask"][0]})
    assert single["image_ig_stats"]["faithfulness"].ndim == 0
    plain = ComputeIntegratedGradientsd("image", model, trust_checks=False, **opts)(batch)
    assert "faithfulness" not in plain["image_ig_stats"]
