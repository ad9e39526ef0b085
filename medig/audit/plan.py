# SPDX-License-Identifier: Apache-2.0
"""The audit's plan: everything that follows from the settings once the model is loaded.

:class:`~medig.audit.settings.AuditSettings` holds what the user asked for; :func:`resolve`
combines it with the loaded model (:class:`~medig.models.LoadedModel`) into one frozen
:class:`AuditPlan`: the class names, the target (resolved once, so a bad one is a usage error
before anything is written), the input size, the completeness tolerance, the normalisation in
effect, where each piece of the model's metadata came from, the weights' SHA-256 and the key of
the numbers. Every step, the auditor, the manifest and the finalisation read the plan; nothing
changes the settings on the way.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from medig.attr.class_group import ClassGroup
from medig.attr.compiled import should_compile
from medig.attr.completeness import default_atol
from medig.audit.errors import AuditError
from medig.audit.settings import NUMERIC_SETTINGS, AuditSettings
from medig.audit.targets import checked_target, describe_target, target_spec

if TYPE_CHECKING:  # the loader is imported when a model is loaded, not with the audit
    from medig.models import LoadedModel

__all__ = ["AuditPlan", "resolve"]

#: Input side when neither ``--size`` nor the model gives one.
DEFAULT_SIZE = 512


@dataclass(frozen=True)
class AuditPlan:
    """The settings of an audit with everything derived from them and the model (frozen).

    Attributes
    ----------
    settings : AuditSettings
        What the user asked for, unchanged.
    class_names : tuple of str
        One name per output of the model (``--classes``, else the model's).
    target : int, ClassGroup or None
        The class or group explained; None for each image's predicted class.
    target_spec : str
        The target in ``--target`` syntax as given or declared (``"pred"`` by default).
    size : int
        Side of the square model input.
    completeness_atol : float or None
        The completeness rule's absolute tolerance (``--completeness-atol``, else the default for
        the explained output); None only for plans not made by :func:`resolve`.
    compile : bool or None
        Whether the path passes are compiled: the request until :meth:`scheduled` decides it for
        the images left to compute.
    mean, std : tuple of float or None
        The normalisation in effect (given or the model's).
    model_metadata : dict
        Where each piece of the model came from (``LoadedModel.provenance``), with
        ``target_source``.
    weights_sha256 : str or None
        SHA-256 of the weights (or model) file.
    """

    settings: AuditSettings
    class_names: tuple[str, ...]
    target: int | ClassGroup | None
    target_spec: str
    size: int
    completeness_atol: float | None = None
    compile: bool | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    model_metadata: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str | None = None

    def settings_dict(self) -> dict[str, Any]:
        """The settings with the values in effect, as ``manifest.json`` records them: every field
        of :class:`AuditSettings` plus ``weights_sha256`` and ``model_metadata``, in that order."""
        given = self.settings.to_dict()
        resolved = {
            "weights_sha256": self.weights_sha256, "class_names": list(self.class_names),
            "target": self.target_spec, "size": self.size,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "model_metadata": self.model_metadata, "completeness_atol": self.completeness_atol,
            "compile": self.compile}
        out: dict[str, Any] = {}
        for name, value in given.items():
            out[name] = resolved.get(name, value)
            if name == "weights":
                out["weights_sha256"] = resolved["weights_sha256"]
            elif name == "model_args":
                out["model_metadata"] = resolved["model_metadata"]
        return out

    def numeric(self) -> dict[str, Any]:
        """The settings in effect that determine the per-image numbers (JSON-ready)."""
        d = self.settings_dict()
        return {k: d[k] for k in NUMERIC_SETTINGS}

    def key(self) -> str:
        """A short hash of :meth:`numeric`: results computed under the same key are reusable."""
        blob = json.dumps(self.numeric(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def changed_from(self, other: dict[str, Any]) -> list[str]:
        """Names of the numeric settings that differ from a previous audit's settings dict."""
        mine = self.numeric()
        return [k for k in NUMERIC_SETTINGS if other.get(k) != mine[k]]

    def describe_target(self) -> dict[str, Any]:
        """What the audit explains, for ``manifest.json`` and the report
        (:func:`medig.audit.targets.describe_target`)."""
        return describe_target(self.target, self.target_spec, self.class_names,
                               self.settings.output, self.model_metadata.get("target_source"))

    def scheduled(self, device: torch.device, n_images: int) -> AuditPlan:
        """The plan with ``compile`` decided for ``n_images`` left to compute on ``device``
        (``--compile``, else whether they pass the break-even; :func:`should_compile`)."""
        return dataclasses.replace(
            self, compile=should_compile(self.settings.compile, device, n_images))


def resolve(settings: AuditSettings, loaded: LoadedModel) -> AuditPlan:
    """The plan of an audit of ``loaded`` with ``settings``.

    Without ``--target`` the model's declared target is explained (a positive class or group, so
    that green means the same thing on every page), else each image's predicted class.

    Raises
    ------
    AuditError
        ``--classes`` names another number of classes than the model has.
    AuditUsageError
        The target (given or declared) is not a class or group of the model, or is a group with
        ``--output logit``.
    """
    model_names = [str(c) for c in loaded.class_names]
    class_names = tuple(settings.class_names) or tuple(model_names)
    if len(class_names) != len(model_names):
        raise AuditError(f"--classes names {len(class_names)} classes but the model has "
                         f"{len(model_names)}")
    meta = loaded.metadata
    if settings.target is not None:
        spec, source = settings.target or "pred", "argument"
    elif loaded.default_target is not None:
        spec = target_spec(loaded.default_target, model_names)
        where = meta.sources.get("target", "metadata") if meta is not None else "metadata"
        source = f"declared by the model ({where})"
    else:
        spec, source = "pred", "default (the predicted class)"
    target = checked_target(spec, class_names, settings.output, source)
    mean = meta.mean if meta is not None else None
    std = meta.std if meta is not None else None
    return AuditPlan(
        settings=settings, class_names=class_names, target=target, target_spec=spec,
        size=settings.size or int(loaded.input_size or DEFAULT_SIZE),
        completeness_atol=(settings.completeness_atol if settings.completeness_atol is not None
                           else default_atol(settings.output)),
        compile=settings.compile,
        mean=None if mean is None else tuple(float(v) for v in mean),
        std=None if std is None else tuple(float(v) for v in std),
        model_metadata={**loaded.provenance(), "target_source": source},
        weights_sha256=loaded.weights_sha256)
