# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import pytest
import torch

from medig import FundusIntegratedGradients, with_normalization
from tests.conftest import small_cnn


def test_normalisation_is_folded_in():
    net = small_cnn()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    wrapped = with_normalization(net, mean, std)
    x = torch.rand(2, 3, 16, 16)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(wrapped(x), net((x - m) / s))
    assert not wrapped.training
    # The black baseline is a black photograph: F(baseline) is the model at (0 - mean) / std.
    expl = FundusIntegratedGradients(wrapped).explain(x, target=1)
    with torch.no_grad():
        assert torch.allclose(expl.baseline_score, net((torch.zeros_like(x) - m) / s)[:, 1])


def test_bad_statistics():
    with pytest.raises(ValueError):
        with_normalization(small_cnn(), (0.5, 0.5), (0.2, 0.2, 0.2))
    with pytest.raises(ValueError):
        with_normalization(small_cnn(), (0.5,) * 3, (0.2, 0.0, 0.2))
