# SPDX-License-Identifier: Apache-2.0
"""The audit's model, loaded from the settings, with what the model declares.

:func:`load_for_audit` loads the model the settings name (``--model``, ``--weights``,
``--classes``, ``--mean``/``--std``, ``--input-size``, ``--model-arg``), fills the settings with
what is in effect (normalisation, where each piece came from) and, when no ``--target`` was
given, takes the model's declared target (a positive class or group) so that green means the
same thing, e.g. "towards referral", on every page.
"""
from __future__ import annotations

from torch import nn

from medig.audit.settings import AuditSettings
from medig.audit.targets import target_spec

__all__ = ["load_for_audit"]


def load_for_audit(settings: AuditSettings) -> tuple[nn.Module, list[str], int | None, str | None]:
    """Load the settings' model; fill ``settings.mean/std``, ``settings.model_metadata`` and, when
    no target was given, ``settings.target`` with the model's declared one (else ``"pred"``)."""
    from medig.models import load_model

    loaded = load_model(settings.model, weights=settings.weights,
                        class_names=settings.class_names or None, input_size=settings.input_size,
                        model_kwargs=settings.model_args or None, mean=settings.mean,
                        std=settings.std)
    meta = loaded.metadata
    settings.mean = [float(v) for v in meta.mean] if meta.mean is not None else None
    settings.std = [float(v) for v in meta.std] if meta.std is not None else None
    if settings.target is not None:
        source = "argument"
    elif loaded.default_target is not None:
        settings.target = target_spec(loaded.default_target, loaded.class_names)
        source = f"declared by the model ({meta.sources.get('target', 'metadata')})"
    else:
        settings.target, source = "pred", "default (the predicted class)"
    settings.model_metadata = {**loaded.provenance(), "target_source": source}
    return loaded.model, list(loaded.class_names), loaded.input_size, loaded.weights_sha256
