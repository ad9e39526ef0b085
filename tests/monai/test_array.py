# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor, PILReader
from monai.transforms import Compose, EnsureChannelFirst, LoadImage

from medig import FundusIntegratedGradients
from medig.io import read_image
from medig.monai import FOV_BOX_KEY, ComputeIntegratedGradients, PreprocessFundus, to_unit_range
from medig.preprocess import FundusPreprocess as CorePreprocess
from tests.monai.conftest import SIZE

IG_OPTS = dict(completeness_tol=0.01, max_steps=64)


def test_to_unit_range_rule() -> None:
    u8 = torch.tensor([[[0, 255]]], dtype=torch.uint8)
    assert to_unit_range(u8) is u8
    assert to_unit_range(torch.tensor([[[0.0, 255.0]]])).dtype == torch.uint8  # lossless
    torch.testing.assert_close(to_unit_range(torch.tensor([[[0.0, 127.5]]])),
                               torch.tensor([[[0.0, 0.5]]]))
    assert torch.equal(to_unit_range(torch.tensor([[[0.0, 0.5]]])), torch.tensor([[[0.0, 0.5]]]))
    assert to_unit_range(torch.tensor([[[0, 200]]], dtype=torch.int32)).dtype == torch.uint8
    with pytest.raises(ValueError, match="ScaleIntensityRange"):
        to_unit_range(torch.tensor([[[0.0, 4095.0]]]))


def test_pil_orientation_matches_medig_io(fundus_dir, model) -> None:
    """LoadImage(PILReader) gives (C, W, H); with reverse_indexing the pipeline equals medig.io's."""
    path = fundus_dir / "img0.png"
    loaded = Compose([LoadImage(reader=PILReader(), image_only=True), EnsureChannelFirst()])(path)
    assert tuple(loaded.shape[1:]) == (84, 60)  # (W, H): the frame is 60 x 84
    image = PreprocessFundus(size=SIZE, reverse_indexing=True)(loaded)

    ref, _ = CorePreprocess(size=SIZE)(read_image(path).pixels[None])
    torch.testing.assert_close(image.as_tensor()[None], ref, atol=1e-5, rtol=0)
    # Without the option the image is silently transposed: the check above must be able to fail.
    wrong = PreprocessFundus(size=SIZE)(loaded)
    assert (wrong.as_tensor() - ref[0]).abs().max() > 0.1

    attr = ComputeIntegratedGradients(model, **IG_OPTS)(image)
    core = FundusIntegratedGradients(model).explain(ref, **IG_OPTS)
    torch.testing.assert_close(attr.as_tensor()[None], core.attributions, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("reverse", [False, True])
def test_metadata_kept_and_affine_updated(fundus_dir, reverse) -> None:
    reader = PILReader(reverse_indexing=reverse)
    loaded = Compose([LoadImage(reader=reader, image_only=True), EnsureChannelFirst()])(
        fundus_dir / "img2.png")
    loaded.meta["affine"] = torch.diag(torch.tensor([0.5, 2.0, 1.0, 1.0], dtype=torch.float64))
    image, mask = PreprocessFundus(size=SIZE, reverse_indexing=reverse, return_mask=True)(loaded)
    assert isinstance(image, MetaTensor) and isinstance(mask, MetaTensor)
    assert mask.dtype == torch.bool and tuple(mask.shape) == (1, SIZE, SIZE)
    assert image.meta["filename_or_obj"] == loaded.meta["filename_or_obj"]
    assert tuple(image.meta["spatial_shape"].tolist()) == (SIZE, SIZE)
    x0, y0, x1, y1 = image.meta[FOV_BOX_KEY].tolist()
    # The output's centre maps, through the new affine, to the world position of the box centre.
    c = SIZE / 2 - 0.5
    world = image.affine @ torch.tensor([c, c, 0.0, 1.0], dtype=torch.float64)
    col, row = (x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5
    index = (col, row) if reverse else (row, col)
    expected = loaded.affine @ torch.tensor([*index, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(world, expected)
    # One output pixel step along axis 1 (a column) is (x1 - x0) / SIZE input columns.
    step = image.affine[:2, 1]
    along = 0 if reverse else 1
    assert step[along].item() == pytest.approx(loaded.affine[along, along].item() * (x1 - x0) / SIZE)


def test_bad_shapes_raise(model) -> None:
    with pytest.raises(ValueError, match="EnsureChannelFirst"):
        PreprocessFundus(size=SIZE)(torch.zeros(60, 84, 3, 1))
    with pytest.raises(ValueError, match="N, C, H, W"):
        ComputeIntegratedGradients(model)(torch.zeros(3, 8))


def test_ig_batch_and_single_equal_core(model) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, SIZE, SIZE)
    core = FundusIntegratedGradients(model, baselines="blur").explain(x, target=1, **IG_OPTS)
    ig = ComputeIntegratedGradients(model, baselines="blur", target=1, **IG_OPTS)
    batch = ig(x)
    assert batch.shape == x.shape
    torch.testing.assert_close(batch, core.attributions, atol=1e-6, rtol=1e-5)
    single = ig.explain(x[1])
    torch.testing.assert_close(single.score, core.score[1:])
    torch.testing.assert_close(ig(x[1]), core.attributions[1], atol=1e-5, rtol=1e-4)


def test_ig_restores_training_mode(model) -> None:
    model.train()
    ComputeIntegratedGradients(model, **IG_OPTS)(torch.rand(3, SIZE, SIZE))
    assert model.training
