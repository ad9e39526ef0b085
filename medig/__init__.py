# SPDX-License-Identifier: Apache-2.0
"""medig: Integrated Gradients audits of retinal fundus classifiers, built on Captum.

The public names are re-exported here and imported lazily, so ``import medig`` (and the ``medig``
command's start-up) does not pay for Captum or torchvision until they are used.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "FundusIntegratedGradients": "medig.attr",
    "Explanation": "medig.attr",
    "with_normalization": "medig.attr",
    "load_model": "medig.models",
    "LoadedModel": "medig.models",
    "ModelLoadError": "medig.models",
    "ClassGroup": "medig.attr",
    "explained_output": "medig.attr",
}

__all__ = ["__version__", *_LAZY]  # noqa: PLE0604 - the lazy names, listed once

if TYPE_CHECKING:  # pragma: no cover - "X as X": re-exported names, for type checkers
    from medig.attr import ClassGroup as ClassGroup
    from medig.attr import Explanation as Explanation
    from medig.attr import FundusIntegratedGradients as FundusIntegratedGradients
    from medig.attr import explained_output as explained_output
    from medig.attr import with_normalization as with_normalization
    from medig.models import LoadedModel as LoadedModel
    from medig.models import ModelLoadError as ModelLoadError
    from medig.models import load_model as load_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medig' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
