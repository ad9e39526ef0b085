# SPDX-License-Identifier: Apache-2.0
"""The audit's model, loaded from the settings.

:func:`load_for_audit` loads the model the settings name (``--model``, ``--weights``,
``--classes``, ``--mean``/``--std``, ``--input-size``, ``--model-arg``); what the model declares
(its target, normalisation, input size, where each piece came from) goes into the audit's plan
(:func:`medig.audit.plan.resolve`), never back into the settings.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from medig.audit.settings import AuditSettings

if TYPE_CHECKING:
    from medig.models import LoadedModel

__all__ = ["load_for_audit"]


def load_for_audit(settings: AuditSettings) -> LoadedModel:
    """:func:`medig.load_model` on the settings' model options (the default ``model_loader``)."""
    from medig.models import load_model

    return load_model(settings.model, weights=settings.weights,
                      class_names=list(settings.class_names) or None,
                      input_size=settings.input_size, model_kwargs=settings.model_args or None,
                      mean=settings.mean, std=settings.std)
