# SPDX-License-Identifier: Apache-2.0
"""MONAI interop: medig's preprocessing and Integrated Gradients as MONAI transforms, a
``GradCAM``-style visualizer and an Ignite handler for MONAI engines.

Importable only where MONAI is installed (``pip install "medig[monai]"`` also brings
``pytorch-ignite`` for the handler); nothing in medig's core imports this package. Everything here
is a thin adapter over :mod:`medig.preprocess`, :class:`medig.FundusIntegratedGradients`,
:mod:`medig.visualize` and :mod:`medig.audit.records`: same numbers as the core API.

Name clash: :class:`medig.monai.FundusPreprocess` is a MONAI ``Transform`` for one channel-first
image as MONAI loads it; :class:`medig.preprocess.FundusPreprocess` is the batched ``nn.Module`` of
the core. Likewise :class:`medig.monai.IntegratedGradients` is a transform, not Captum's class.

Orientation: MONAI's ``PILReader`` and ``PydicomReader`` return 2-D images with spatial axes
``(W, H)`` by default; pass ``reverse_indexing=True`` to :class:`FundusPreprocess` /
:class:`FundusPreprocessd` (or load with ``PILReader(reverse_indexing=False)``) so models see the
photograph as :func:`medig.io.read_image` returns it.
"""
from __future__ import annotations

try:
    import monai  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without MONAI
    raise ImportError('medig.monai needs MONAI: pip install "medig[monai]"') from exc

from medig.monai.array import (
    FOV_BOX_KEY,
    STATS_FIELDS,
    FundusPreprocess,
    IntegratedGradients,
    explanation_stats,
    to_unit_range,
)
from medig.monai.dictionary import (
    FundusPreprocessD,
    FundusPreprocessd,
    FundusPreprocessDict,
    IntegratedGradientsD,
    IntegratedGradientsd,
    IntegratedGradientsDict,
)
from medig.monai.visualizer import IntegratedGradientsVisualizer, minmax_normalizer

__all__ = [
    "FOV_BOX_KEY",
    "STATS_FIELDS",
    "FundusPreprocess",
    "FundusPreprocessD",
    "FundusPreprocessDict",
    "FundusPreprocessd",
    "IntegratedGradients",
    "IntegratedGradientsD",
    "IntegratedGradientsDict",
    "IntegratedGradientsHandler",
    "IntegratedGradientsVisualizer",
    "IntegratedGradientsd",
    "explanation_stats",
    "minmax_normalizer",
    "to_unit_range",
]


def __getattr__(name: str) -> object:
    # The handler pulls in medig.audit and pytorch-ignite: loaded on first use, so the transforms
    # work where ignite is absent, as MONAI's own handlers do.
    if name == "IntegratedGradientsHandler":
        from medig.monai.handlers import IntegratedGradientsHandler

        return IntegratedGradientsHandler
    raise AttributeError(f"module 'medig.monai' has no attribute {name!r}")
