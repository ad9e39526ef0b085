# SPDX-License-Identifier: Apache-2.0
"""One image's results as a DICOM Structured Report (TID 1500 Measurement Report), and back.

:func:`measurement_report` builds an **Enhanced SR** (1.2.840.10008.5.1.4.1.1.88.22). Enhanced
SR, not Comprehensive 3D SR: the report holds numbers, codes, text and image references of a 2-D
photograph, all of which Enhanced SR carries, and it has no 3-D coordinates to hold; it is the
narrower IOD, so more archives, viewers and registries read it (Comprehensive 3D SR is a later,
less widely supported class).

The content tree, coded as :mod:`medig.pacs.coding` lists:

* the observer is a device, medig, and the measurement group names the algorithm (TID 4019): medig
  and its version, with the model's name and the SHA-256 of its weights as parameters;
* one measurement group (TID 1501) references the source instance (and frame); its finding is the
  predicted class; its numeric items are the row's figures (``score`` = F(x), ``baseline_score`` =
  F(x'), ``delta``, ``relative_error``, ``abs_tol``, ``map_error`` when the row has it,
  ``n_steps``, ``baseline_agreement``, ``faithfulness``); its coded items the predicted class,
  the explained target and the verdicts (completeness, baseline agreement, faithfulness, the
  model-randomisation sanity check, image quality); its text items the class names as the model
  names them, the trust flags, the quality reasons and, when the row has one, the reason it is
  flagged (``flag_reason``).

A figure the row does not have (None, not a finite number) is left out. :func:`read_sr` reads a
report back into a result-row dict.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import highdicom as hd
import pydicom
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from medig.io._quiet import quiet
from medig.pacs.coding import (
    CONCEPTS,
    SCHEME,
    UNITLESS,
    VERDICTS,
    class_code,
    concept,
    declare_scheme,
    verdict,
)
from medig.pacs.objects import (
    MANUFACTURER,
    Source,
    _apply_copied,
    _copied_digest,
    _silent,
    _software_version,
    _stamp,
    stand_in,
)
from medig.pacs.uids import derived_uid

__all__ = ["NUMERIC_FIELDS", "SR_SERIES_DESCRIPTION", "SR_SERIES_NUMBER", "Algorithm",
           "measurement_report", "read_sr"]

SR_SERIES_DESCRIPTION = "medig IG measurements (not for diagnosis)"
SR_SERIES_NUMBER = 9920

#: The row's numeric figures the report holds, in order (keys of :data:`CONCEPTS`).
NUMERIC_FIELDS = ("score", "predicted_probability", "baseline_score", "delta", "relative_error",
                  "abs_tol", "map_error", "n_steps", "baseline_agreement", "faithfulness",
                  "map_scale", "map_threshold")
_INTEGER_FIELDS = {"n_steps"}


class Algorithm:
    """What made the report: the model's name and weights' SHA-256, the explainer's settings."""

    def __init__(self, model: str, weights_sha256: str | None, parameters: list[str]) -> None:
        self.model, self.weights_sha256, self.parameters = model, weights_sha256, parameters

    def identification(self) -> hd.sr.AlgorithmIdentification:
        import medig

        sha = self.weights_sha256 or "none (the model's own weights)"
        return hd.sr.AlgorithmIdentification(
            name="medig Integrated Gradients", version=medig.__version__,
            manufacturer=MANUFACTURER,
            parameters=[_text(f"model {self.model}")[:1024], f"weights SHA-256 {sha}",
                        *(_text(p)[:1024] for p in self.parameters)])

    def key(self) -> str:
        return json.dumps([self.model, self.weights_sha256, self.parameters])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _code_item(key: str, value: CodedConcept) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(concept(key), value)


def _text(value: str) -> str:
    """``value`` as text any character set encodes (a name read from a non-UTF-8 file system
    holds surrogate escapes: its undecodable bytes become U+FFFD)."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that escapes no byte
        return value.encode("utf-8", "replace").decode("utf-8")


def _text_item(key: str, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=concept(key), value=_text(value)[:1024] or "-",
                                 relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _verdicts(row: Mapping[str, Any], sanity: str | None) -> dict[str, str]:
    flags = set(row.get("trust_flags") or [])
    out = {"completeness": "incomplete" if row.get("flagged") is True else "complete"}
    for key, figure, flag, good in (("agreement_verdict", "baseline_agreement",
                                     "baseline-dependent", "agree"),
                                    ("faithfulness_verdict", "faithfulness", "not-faithful",
                                     "faithful")):
        out[key] = flag if flag in flags else (
            good if _number(row.get(figure)) is not None else "not measured")
    out["sanity_check"] = sanity if sanity in VERDICTS else "not run"
    if row.get("quality") in VERDICTS:
        out["quality"] = str(row["quality"])
    return out


def _figures(row: Mapping[str, Any], map_figures: Mapping[str, float] | None) -> dict[str, Any]:
    probabilities = row.get("probabilities") or {}
    figures = {k: row.get(k) for k in NUMERIC_FIELDS}
    figures["predicted_probability"] = probabilities.get(row.get("predicted"))
    figures.update(map_figures or {})
    return {k: _number(figures.get(k)) for k in NUMERIC_FIELDS}


def measurement_report(
    source: Source,
    row: Mapping[str, Any],
    *,
    frame: int | None,
    algorithm: Algorithm,
    sanity: str | None,
    output_key: str,
    instance_number: int,
    map_figures: Mapping[str, float] | None = None,
    created: datetime.datetime | None = None,
) -> Dataset:
    """The Enhanced SR of one image's result ``row``.

    Parameters
    ----------
    source : Source
        The source image's header.
    row : mapping
        The image's result row (``predicted``, ``target``, ``score``, ...).
    frame : int or None
        0-based frame of a multi-frame source.
    algorithm : Algorithm
        The model and settings: the algorithm identification.
    sanity : str or None
        The audit's sanity-check status (``manifest.json``: ``passed``, ``failed``, ``not run``).
    output_key : str
        Hash of everything that shapes the outputs.
    instance_number : int
        The instance's number in its series.
    map_figures : mapping, optional
        ``map_scale`` and ``map_threshold`` of the evidence map, when one is written.
    created : datetime.datetime, optional
        The object's dates (the audit's first run), as in
        :func:`medig.pacs.objects.overlay_capture`.

    Raises
    ------
    medig.pacs.charset.UncopyableText
        The source's patient or study text cannot be copied with certainty.
    """
    figures = _figures(row, map_figures)
    verdicts = _verdicts(row, sanity)
    predicted, target = str(row.get("predicted") or ""), str(row.get("target") or "")
    texts = {"predicted_name": predicted, "target_name": target}
    content_key = json.dumps([figures, verdicts, texts, row.get("trust_flags"),
                              row.get("quality_reasons"), row.get("flag_reason"),
                              algorithm.key()], sort_keys=True,
                             ensure_ascii=False)
    content = hashlib.sha256(content_key.encode("utf-8", "surrogatepass")).hexdigest()
    series_uid = derived_uid("medig-sr-series", source.study_uid, output_key)
    sop_uid = derived_uid("medig-sr", source.sop_uid, str(frame), output_key, content,
                          _copied_digest(source.dataset), str(instance_number))

    measurements = []
    for key in NUMERIC_FIELDS:
        value = figures[key]
        if value is None:
            continue
        measurements.append(hd.sr.Measurement(name=concept(key), value=value, unit=UNITLESS))
    evaluations = [_code_item("predicted", class_code(predicted)),
                   _code_item("target", class_code(target))]
    evaluations += [_code_item(key, verdict(value)) for key, value in verdicts.items()]
    reference = hd.sr.SourceImageForMeasurementGroup(
        referenced_sop_class_uid=source.sop_class_uid,
        referenced_sop_instance_uid=source.sop_uid,
        referenced_frame_numbers=[frame + 1] if frame is not None and source.frames > 1
        else None)
    with _silent():
        device = hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid("medig-device", algorithm.model, str(algorithm.weights_sha256)),
            name="medig", manufacturer_name=MANUFACTURER,
            model_name=_text(algorithm.model)[:64])
        observer = hd.sr.ObserverContext(observer_type=codes.cid270.Device,
                                         observer_identifying_attributes=device)
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=derived_uid("medig-sr-tracking", source.sop_uid, str(frame)),
                identifier="medig attribution of the source image"),
            finding_type=class_code(predicted), algorithm_id=algorithm.identification(),
            measurements=measurements, qualitative_evaluations=evaluations,
            source_images=[reference])
        items = group[0].ContentSequence
        for key, value in texts.items():
            items.append(_text_item(key, value))
        for flag in row.get("trust_flags") or []:
            items.append(_text_item("trust_flag", str(flag)))
        for reason in row.get("quality_reasons") or []:
            items.append(_text_item("quality_reason", str(reason)))
        if row.get("flag_reason"):  # why the image is flagged, where the row says
            items.append(_text_item("flag_reason", str(row["flag_reason"])))
        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
            procedure_reported=concept("procedure"), imaging_measurements=[group])
        sr = hd.sr.EnhancedSR(
            evidence=[stand_in(source)], content=report[0], series_instance_uid=series_uid,
            series_number=SR_SERIES_NUMBER, sop_instance_uid=sop_uid,
            instance_number=instance_number, manufacturer=MANUFACTURER, is_complete=True,
            is_final=False, is_verified=False)
    if "ContributingEquipmentSequence" in sr:  # highdicom names itself, dated by the clock
        del sr.ContributingEquipmentSequence
    if created is not None:  # else highdicom's dates stay: the content date is type 1
        _stamp(sr, created)
    declare_scheme(sr)
    sr.SeriesDescription = SR_SERIES_DESCRIPTION
    sr.SoftwareVersions = _software_version()
    sr.ManufacturerModelName = "medig"
    _apply_copied(sr, source.dataset)  # last: the character set must hold medig's text too
    return sr


def _walk(items: Any) -> Any:
    for item in items or []:
        yield item
        yield from _walk(item.get("ContentSequence"))


def _name(item: Dataset) -> tuple[str, str] | None:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return None
    return str(seq[0].CodingSchemeDesignator), str(seq[0].CodeValue)


def read_sr(path: str | os.PathLike) -> dict[str, Any]:
    """A medig Measurement Report read back into a result-row dict.

    Returns
    -------
    dict
        The numeric figures the report holds (:data:`NUMERIC_FIELDS`; ``predicted_probability``
        as ``probabilities: {predicted: p}``), ``predicted`` and ``target`` (the class names as the
        model names them), ``predicted_code`` and ``target_code`` (``(value, scheme, meaning)``),
        the verdicts (``completeness``, ``agreement_verdict``, ``faithfulness_verdict``,
        ``sanity_check``, ``quality``: row values), ``flagged``, ``trust_flags``,
        ``quality_reasons`` and ``flag_reason`` (when the report has one).

    Raises
    ------
    ValueError
        ``path`` is not a medig Measurement Report.
    """
    with quiet():
        ds = pydicom.dcmread(path)
    if "ContentSequence" not in ds or ds.get("Manufacturer") != MANUFACTURER:
        raise ValueError(f"{os.fspath(path)}: not a medig Measurement Report")
    by_code = {value: key for key, (value, _) in CONCEPTS.items()}
    by_verdict = {value: key for key, (value, _) in VERDICTS.items()}
    row: dict[str, Any] = {"trust_flags": [], "quality_reasons": []}
    for item in _walk(ds.ContentSequence):
        name = _name(item)
        if name is None or name[0] != SCHEME or name[1] not in by_code:
            continue
        key = by_code[name[1]]
        kind = item.get("ValueType")
        if kind == "NUM" and item.get("MeasuredValueSequence"):
            measured = item.MeasuredValueSequence[0]
            value = float(measured.get("FloatingPointValue", measured.NumericValue))
            row[key] = int(value) if key in _INTEGER_FIELDS else value
        elif kind == "CODE":
            code = item.ConceptCodeSequence[0]
            triple = (str(code.CodeValue), str(code.CodingSchemeDesignator),
                      str(code.CodeMeaning))
            if key in ("predicted", "target"):
                row[f"{key}_code"] = triple
            elif triple[1] == SCHEME and triple[0] in by_verdict:
                row[key] = by_verdict[triple[0]]
        elif kind == "TEXT":
            text = str(item.TextValue)
            if key in ("predicted_name", "target_name"):
                row[key.removesuffix("_name")] = text
            elif key == "trust_flag":
                row["trust_flags"].append(text)
            elif key == "quality_reason":
                row["quality_reasons"].append(text)
            elif key == "flag_reason":
                row["flag_reason"] = text
    probability = row.pop("predicted_probability", None)
    if probability is not None and "predicted" in row:
        row["probabilities"] = {row["predicted"]: probability}
    if "completeness" in row:
        row["flagged"] = row["completeness"] == "incomplete"
    return row
