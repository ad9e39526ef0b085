# SPDX-License-Identifier: Apache-2.0
"""Models: the shipped demo classifier and the loader for users' own classifiers."""
from __future__ import annotations

from medig.models.demo import DemoNet
from medig.models.errors import ModelArgumentError, ModelLoadError
from medig.models.loading import DEMO_WEIGHTS, LoadedModel, load_model

__all__ = ["DEMO_WEIGHTS", "DemoNet", "LoadedModel", "ModelArgumentError", "ModelLoadError",
           "load_model"]
