# SPDX-License-Identifier: Apache-2.0
"""MONAI interop: medig's preprocessing and Integrated Gradients as MONAI transforms, a
``GradCAM``-style visualizer and an Ignite handler for MONAI engines.

Importable only where MONAI is installed (``pip install "medig[monai]"`` also brings
``pytorch-ignite`` for the handler); nothing in medig's core imports this package. Everything here
is a thin adapter over :mod:`medig.preprocess`, :class:`medig.FundusIntegratedGradients`,
:mod:`medig.visualize` and :mod:`medig.audit.records`: same numbers as the core API.

Names: the transforms are named as MONAI names its own, by what they do.
:class:`PreprocessFundus` (with ``PreprocessFundusd``, ``D``, ``Dict``) preprocesses one
channel-first image as MONAI loads it, through the batched core ``nn.Module``
:class:`medig.preprocess.FundusPreprocess`; :class:`ComputeIntegratedGradients` (and its dictionary
forms) computes attributions through :class:`medig.FundusIntegratedGradients`, and is not Captum's
``IntegratedGradients``. Their former names (``FundusPreprocess``, ``IntegratedGradients``,
``FundusPreprocessd``, ``IntegratedGradientsd``, ...) still work for one release, with a
``DeprecationWarning``.

Orientation: MONAI's ``PILReader`` and ``PydicomReader`` return 2-D images with spatial axes
``(W, H)`` by default; pass ``reverse_indexing=True`` to :class:`PreprocessFundus` /
:class:`PreprocessFundusd` (or load with ``PILReader(reverse_indexing=False)``) so models see the
photograph as :func:`medig.io.read_image` returns it.
"""
from __future__ import annotations

try:
    import monai  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without MONAI
    raise ImportError('medig.monai needs MONAI: pip install "medig[monai]"') from exc

from medig._deprecation import renamed_attribute
from medig.monai import array as _array
from medig.monai import dictionary as _dictionary
from medig.monai.array import (
    FOV_BOX_KEY,
    STATS_FIELDS,
    ComputeIntegratedGradients,
    PreprocessFundus,
    explanation_stats,
    to_unit_range,
)
from medig.monai.dictionary import (
    ComputeIntegratedGradientsD,
    ComputeIntegratedGradientsd,
    ComputeIntegratedGradientsDict,
    PreprocessFundusD,
    PreprocessFundusd,
    PreprocessFundusDict,
)
from medig.monai.visualizer import IntegratedGradientsVisualizer, minmax_normalizer

__all__ = [
    "FOV_BOX_KEY",
    "STATS_FIELDS",
    "ComputeIntegratedGradients",
    "ComputeIntegratedGradientsD",
    "ComputeIntegratedGradientsDict",
    "ComputeIntegratedGradientsd",
    "IntegratedGradientsHandler",
    "IntegratedGradientsVisualizer",
    "PreprocessFundus",
    "PreprocessFundusD",
    "PreprocessFundusDict",
    "PreprocessFundusd",
    "explanation_stats",
    "minmax_normalizer",
    "to_unit_range",
]

#: Former names of the transforms, served with a DeprecationWarning until the next release.
_RENAMED = {**_array._RENAMED, **_dictionary._RENAMED}


def __getattr__(name: str) -> object:
    # The handler pulls in medig.audit and pytorch-ignite: loaded on first use, so the transforms
    # work where ignite is absent, as MONAI's own handlers do.
    if name == "IntegratedGradientsHandler":
        from medig.monai.handlers import IntegratedGradientsHandler

        return IntegratedGradientsHandler
    return renamed_attribute(__name__, _RENAMED, globals(), name)
