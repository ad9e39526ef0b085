# SPDX-License-Identifier: Apache-2.0
"""The settings of an audit: what the user asked for, frozen.

What follows from them once the model is loaded (class names, the target, the input size, the
tolerances, the key that says whether two audits computed the same numbers) is the audit's plan,
:class:`~medig.audit.plan.AuditPlan`, built once by :func:`~medig.audit.plan.resolve`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["NUMERIC_SETTINGS", "AuditSettings", "settings_problem"]

#: Settings that change the per-image numbers; the others (device, batch size, workers, paths,
#: overlay scaling) only change how fast or how the results are shown, so a resumed audit may differ
#: in them. Their values are the plan's (as resolved): see :meth:`AuditPlan.numeric`.
NUMERIC_SETTINGS: tuple[str, ...] = (
    "model", "weights_sha256", "class_names", "target", "baselines", "completeness_tol",
    "max_steps", "size", "graham", "output", "method", "mask_dilation",
    "mean", "std", "model_args",  # normalisation and constructor arguments in effect
    "completeness_atol", "path_dtype",
    "map_tol",
)
NUMERIC_SETTINGS += ("trust_checks", "cross_check")  # they add result columns
NUMERIC_SETTINGS += ("quality",)  # skip leaves images unexplained; off drops the verdicts

#: Fields held as tuples (lists are accepted and converted), so a settings object never changes.
_TUPLES = ("class_names", "baselines", "mean", "std", "cross_check")


@dataclass(frozen=True)
class AuditSettings:
    """What the user asked for (the CLI's options); never changed by the audit.

    Attributes mirror ``medig audit``'s options; see ``medig audit --help``. Empty or None
    values mean "from the model" or "the default": :func:`~medig.audit.plan.resolve` fills them
    into the audit's :class:`~medig.audit.plan.AuditPlan`. Sequences may be given as lists; they
    are held as tuples.
    """

    model: str = "demo"
    weights: str | None = None
    class_names: tuple[str, ...] = ()  # empty: the model's
    target: str | None = None  # None: the model's declared target, else "pred"
    baselines: tuple[str, ...] = ("black", "blur")
    completeness_tol: float = 0.01
    max_steps: int = 256
    size: int = 512  # 0: the model's input size (512 when it declares none)
    graham: bool = False
    output: str = "probability"
    method: str = "adaptive"
    device: str = "auto"
    batch_size: int = 8
    workers: int = 2
    threads: int = 0
    masks: str | None = None
    mask_dilation: int = 5
    include_phi: bool = False
    save_attributions: bool = False
    overlay_scale: str = "cohort"
    percentile: float = 99.5
    template: str | None = None
    jpeg_on_device: bool | None = None  # None: decode JPEGs on the device when it is CUDA
    # per-study pages (the audit's own step), DICOM output and sending it to a PACS
    # (AET@HOST:PORT): steps of medig.pacs that the caller composes, run_audit(extra_steps=...)
    per_study: bool = False
    dicom_out: bool = False
    send: str | None = None
    calling_aet: str = "MEDIG"
    # model metadata from the command line (None: the model's)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: int | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    # trust checks (per-image agreement/faithfulness, optional cross-checks, sanity check)
    trust_checks: bool = True
    cross_check: tuple[str, ...] = ()
    sanity_sample: int = 8
    quality: str = "flag"  # image-quality gate, flag | skip | off
    # absolute completeness tolerance (None: the default for the output), torch.compile of the
    # path passes (None: where it pays), autocast dtype of the path passes (None: float32).
    completeness_atol: float | None = None
    compile: bool | None = None
    path_dtype: str | None = None
    # most estimated relative L2 error of each saved map (None: completeness alone)
    map_tol: float | None = 0.05

    def __post_init__(self) -> None:
        for name in _TUPLES:
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "model_args", dict(self.model_args))  # the caller's stays theirs

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def wants_dicom(self) -> bool:
        """DICOM output: ``--dicom-out``, or implied by ``--send``."""
        return self.dicom_out or bool(self.send)

    @property
    def wants_study_pages(self) -> bool:
        """Per-study pages: ``--per-study``, or implied by DICOM output (the Encapsulated PDF is
        the study's page)."""
        return self.per_study or self.wants_dicom


def settings_problem(settings: AuditSettings) -> str | None:
    """The first reason ``settings`` cannot run, one line naming the ``medig audit`` option; or None.

    Checked before anything is loaded or written, so that a typo costs no model load. The options
    of an optional step (e.g. ``--send``) are checked by that step (``AuditStep.problem``).
    """
    from medig.baselines import available_baselines

    if not settings.baselines:  # else every image would fail, one error row each
        return "--baseline: give at least one baseline"
    unknown = [b for b in settings.baselines if b not in available_baselines()]
    if unknown:
        return f"unknown baseline {unknown[0]!r}; known: {', '.join(available_baselines())}"
    if not settings.completeness_tol > 0 or settings.max_steps < 2 or settings.batch_size < 1:
        return "--completeness-tol must be > 0, --max-steps >= 2 and --batch-size >= 1"
    atol = settings.completeness_atol
    if atol is not None and not (atol >= 0 and math.isfinite(atol)):
        return "--completeness-atol must be a finite number >= 0"
    if settings.map_tol is not None and not (settings.map_tol > 0
                                             and math.isfinite(settings.map_tol)):
        return "--map-tol must be a positive number (or 'none')"
    if settings.sanity_sample < 0:
        return "--sanity-sample must be >= 0 (0 disables the sanity check)"
    if settings.template is not None:  # read now, not after the whole audit has run
        from medig.report.template import TemplateError, load_template

        try:
            load_template(settings.template)
        except TemplateError as error:
            return f"--template: {error}"
    return None
