# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch
from monai.visualize import blend_images

from medig import FundusIntegratedGradients
from medig.monai import IntegratedGradientsVisualizer
from medig.visualize import attribution_map
from tests.monai.conftest import SIZE


def test_visualizer_under_no_grad_matches_core(model) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, SIZE, SIZE)
    raw = IntegratedGradientsVisualizer(model, max_steps=64, postprocessing=None)
    with torch.no_grad():
        amap = raw(x, class_idx=1)
        heat = IntegratedGradientsVisualizer(model, max_steps=64)(x, class_idx=1)
    core = FundusIntegratedGradients(model).explain(x, target=1, max_steps=64)
    assert amap.shape == heat.shape == (2, 1, SIZE, SIZE)
    torch.testing.assert_close(amap, attribution_map(core.attributions), atol=1e-6, rtol=1e-5)
    e = raw.last_explanation
    assert e is not None and torch.equal(e.target, torch.tensor([1, 1]))
    torch.testing.assert_close(amap.sum(dim=(1, 2, 3)), e.score - e.baseline_score + e.delta,
                               atol=1e-4, rtol=1e-4)
    # Per-image min-max keeps the order of the raw map (no GradCAM-style flip).
    assert heat.amin(dim=(1, 2, 3)).tolist() == [0.0, 0.0]
    assert heat.amax(dim=(1, 2, 3)).tolist() == [1.0, 1.0]
    assert torch.equal(heat[0].flatten().argmax(), amap[0].flatten().argmax())
    blended = blend_images(x[0], heat[0], cmap="jet")
    assert blended.shape == (3, SIZE, SIZE)


def test_visualizer_overrides_per_call(model) -> None:
    x = torch.rand(1, 3, SIZE, SIZE)
    vis = IntegratedGradientsVisualizer(model, max_steps=64)
    vis.explain(x, baselines="blur")
    assert vis.last_explanation.baselines == ["blur"]
    with pytest.raises(TypeError, match="unexpected"):
        vis(x, layer_idx=-1)
    with pytest.raises(ValueError, match="batch"):
        vis(x[0])
