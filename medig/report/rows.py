# SPDX-License-Identifier: Apache-2.0
"""The result row of an audit: one per input image (per frame for multi-frame DICOM).

:class:`ResultRow` is the one definition of a row's fields, their types and their column order in
``results.jsonl`` and ``results.csv`` (:data:`RESULT_FIELDS` is generated from it). It lives here,
under the report, because everything that reads or writes rows can import it: the audit writes
them (:mod:`medig.audit.records`), the report, the PACS export, the MONAI handler and the console
read them.

A row read back from ``results.jsonl`` is the JSON a previous run wrote; the type describes what
medig writes, it is not checked at run time. Every field is optional (``total=False``): rows of an
older audit may lack newer fields, so readers use ``row.get("...")``, and mypy (with the plugin
configured in ``pyproject.toml``) rejects a key that is not a field.
"""
from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = ["RESULT_FIELDS", "ResultRow", "RowStatus"]

#: ``ok``: explained; ``error``: could not be read or explained; ``skipped``: not explained by
#: choice (``--quality skip``).
RowStatus = Literal["ok", "error", "skipped"]


class ResultRow(TypedDict, total=False):
    """One result row; the fields in column order (see the module docstring)."""

    path: str  # relative path inside the input folder, ``name#frame`` for a frame
    sha256: str | None  # of the input file (None: unreadable)
    status: RowStatus
    error: str | None  # one line, no patient data
    predicted: str | None
    predicted_index: int | None
    probabilities: dict[str, float | None] | None  # by class name
    target: str | None  # the class (or group) explained
    target_index: int | None  # None for a group
    score: float | None  # F(x), the explained output
    baseline_score: float | None  # F(x')
    delta: float | None  # completeness gap: sum of attributions - (F(x) - F(x'))
    relative_error: float | None  # |delta| / |F(x) - F(x')|
    map_error: float | None  # estimated relative L2 error of the map (the map-accuracy rule)
    n_steps: int | None
    flagged: bool | None  # completeness or map accuracy not met
    flag_reason: str | None  # which: "completeness", "map accuracy" or both
    overlay: str | None  # PNG path inside the output folder
    pointing_hit: bool | None  # lesion-mask localisation (None without a mask)
    mask_mass_fraction: float | None
    mask_area_fraction: float | None
    laterality: str | None
    # study (keyed hash, never the UID) and where laterality and study came from
    study: str | None
    study_source: str | None
    laterality_source: str | None
    target_members: list[str] | None  # the classes whose summed probability a group explains
    abs_tol: float | None  # the absolute tolerance the completeness rule allowed this image
    # trust checks
    baseline_agreement: float | None
    baseline_topk_overlap: float | None
    faithfulness: float | None
    deletion_auc: float | None
    random_deletion_auc: float | None
    occlusion_agreement: float | None
    trust_flags: list[str] | None
    outside_fov_share: float | None  # share of |attribution| outside the field of view
    # what the evidence lies on (medig.checks.regions): per region {"pos", "neg", "area"}, and
    # the strongest evidence regions ({"share", "where", "on"})
    region_evidence: dict[str, dict[str, float | None]] | None
    top_regions: list[dict[str, Any]] | None
    # image quality (medig.preprocess.QUALITY_FIELDS)
    quality: str | None
    quality_reasons: list[str] | None
    fov_shape: str | None
    fov_fraction: float | None
    sharpness: float | None
    saturated_fraction: float | None
    dark_fraction: float | None
    shadow_fraction: float | None
    mean_luminance: float | None
    image_colour: str | None
    edge_density: float | None
    vessel_density: float | None


#: Column order of ``results.jsonl`` and ``results.csv``: the fields of :class:`ResultRow`.
RESULT_FIELDS: tuple[str, ...] = tuple(ResultRow.__annotations__)
