# SPDX-License-Identifier: Apache-2.0
"""The settings of an audit, and the key that says whether two audits computed the same numbers."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["NUMERIC_SETTINGS", "AuditSettings", "settings_problem"]

#: Settings that change the per-image numbers; the others (device, batch size, workers, paths,
#: overlay scaling) only change how fast or how the results are shown, so a resumed audit may differ
#: in them.
NUMERIC_SETTINGS = (
    "model", "weights_sha256", "class_names", "target", "baselines", "completeness_tol",
    "max_steps", "size", "graham", "output", "method", "mask_dilation",
    "mean", "std", "model_args",  # normalisation and constructor arguments in effect
    "completeness_atol", "path_dtype",
)
NUMERIC_SETTINGS += ("trust_checks", "cross_check")  # they add result columns
NUMERIC_SETTINGS += ("quality",)  # skip leaves images unexplained; off drops the verdicts


@dataclass
class AuditSettings:
    """Everything that defines an audit (the CLI's options, resolved).

    Attributes mirror ``medig audit``'s options; see ``medig audit --help``.
    """

    model: str = "demo"
    weights: str | None = None
    weights_sha256: str | None = None
    class_names: list[str] = field(default_factory=list)
    target: str | None = None  # None: the model's declared target, else "pred" (filled on load)
    baselines: list[str] = field(default_factory=lambda: ["black", "blur"])
    completeness_tol: float = 0.01
    max_steps: int = 256
    size: int = 512
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
    # per-study pages, DICOM output and sending it to a PACS (AET@HOST:PORT)
    per_study: bool = False
    dicom_out: bool = False
    send: str | None = None
    calling_aet: str = "MEDIG"
    # model metadata from the command line (mean/std are filled with the values in
    # effect once the model is loaded) and where each piece the model uses came from
    mean: list[float] | None = None
    std: list[float] | None = None
    input_size: int | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    model_metadata: dict[str, Any] = field(default_factory=dict)
    # trust checks (per-image agreement/faithfulness, optional cross-checks, sanity check)
    trust_checks: bool = True
    cross_check: list[str] = field(default_factory=list)
    sanity_sample: int = 8
    quality: str = "flag"  # image-quality gate, flag | skip | off
    # absolute completeness tolerance (None: the default for the output, filled in by
    # run_audit), torch.compile of the path passes (None: where it pays), autocast dtype of the
    # path passes (None: float32).
    completeness_atol: float | None = None
    compile: bool | None = None
    path_dtype: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def wants_dicom(self) -> bool:
        """DICOM output: ``--dicom-out``, or implied by ``--send``."""
        return self.dicom_out or bool(self.send)

    @property
    def wants_study_pages(self) -> bool:
        """Per-study pages: ``--per-study``, or implied by DICOM output (the Encapsulated PDF is
        the study's page)."""
        return self.per_study or self.wants_dicom

    def numeric(self) -> dict[str, Any]:
        """The settings that determine the per-image numbers."""
        d = self.to_dict()
        return {k: d[k] for k in NUMERIC_SETTINGS}

    def key(self) -> str:
        """A short hash of :meth:`numeric`: results computed under the same key are reusable."""
        blob = json.dumps(self.numeric(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def changed_from(self, other: dict[str, Any]) -> list[str]:
        """Names of the numeric settings that differ from a previous audit's settings dict."""
        mine = self.numeric()
        return [k for k in NUMERIC_SETTINGS if other.get(k) != mine[k]]


def settings_problem(settings: AuditSettings) -> str | None:
    """The first reason ``settings`` cannot run, one line naming the ``medig audit`` option; or None.

    Checked before anything is loaded or written, so that a typo costs no model load.
    """
    from medig.baselines import available_baselines
    from medig.pacs.send import check_aet, parse_destination

    unknown = [b for b in settings.baselines if b not in available_baselines()]
    if unknown:
        return f"unknown baseline {unknown[0]!r}; known: {', '.join(available_baselines())}"
    if not settings.completeness_tol > 0 or settings.max_steps < 2 or settings.batch_size < 1:
        return "--completeness-tol must be > 0, --max-steps >= 2 and --batch-size >= 1"
    atol = settings.completeness_atol
    if atol is not None and not (atol >= 0 and math.isfinite(atol)):
        return "--completeness-atol must be a finite number >= 0"
    if settings.sanity_sample < 0:
        return "--sanity-sample must be >= 0 (0 disables the sanity check)"
    if settings.wants_dicom and not settings.include_phi:
        return ("--dicom-out and --send need --include-phi: a DICOM object is filed under the "
                "patient's identity, copied from the source image")
    try:
        if settings.send:
            parse_destination(settings.send)
        check_aet(settings.calling_aet, "--calling-aet")
    except ValueError as error:
        return str(error)
    if settings.template is not None:  # read now, not after the whole audit has run
        from medig.report.template import TemplateError, load_template

        try:
            load_template(settings.template)
        except TemplateError as error:
            return f"--template: {error}"
    return None
