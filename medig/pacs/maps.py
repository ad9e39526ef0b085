# SPDX-License-Identifier: Apache-2.0
"""The attribution map as an object a viewer shows on the source image and can switch off.

:func:`on_source_grid` puts the model's map back on the source's pixel grid: the model saw a
square crop (``box``) of the decoded frame, resized to ``size``; the map is resized to the box and
pasted where the box lies (zero outside it, and where the box left the frame only the part inside
is kept). :func:`evidence_segmentation` writes it as a **Segmentation**
(1.2.840.10008.5.1.4.1.1.66.4) of two binary segments on that grid:

1. *evidence for* the explained target (green): attribution positive and at least the threshold;
2. *evidence against* it (red): attribution negative and at most minus the threshold;

where the threshold (:func:`evidence_threshold`) is the 95th percentile of ``|attribution|`` over
the model's field of view: each segment is the strongest of the 5% of the field's pixels whose
attribution is largest in magnitude. The colours are the segments' recommended display colours.

Why a Segmentation and not a Parametric Map: a fundus photograph has no Frame of Reference, which
the Parametric Map IOD requires; highdicom (0.28) cannot build one from such a source, and OHIF,
Weasis and 3D Slicer all show and toggle Segmentation segments over their source image. The map's
real values (its largest magnitude and the threshold) are numbers of the Structured Report.
"""
from __future__ import annotations

import datetime
import hashlib

import highdicom as hd
import numpy as np
import torch
import torch.nn.functional as F
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from medig.pacs.coding import concept, declare_scheme
from medig.pacs.objects import (
    MANUFACTURER,
    Source,
    _apply_copied,
    _copied_digest,
    _silent,
    _software_version,
    _stamp,
    restore_references,
    stand_in,
)
from medig.pacs.uids import derived_uid

__all__ = ["EVIDENCE_COLOURS", "EVIDENCE_FRACTION", "SEG_SERIES_DESCRIPTION", "SEG_SERIES_NUMBER",
           "evidence_masks", "evidence_segmentation", "evidence_threshold", "on_source_grid"]

#: The share of the field of view's pixels, by |attribution|, that the segments may hold.
EVIDENCE_FRACTION = 0.05
#: Recommended display colours (RGB) of the segments: for, against.
EVIDENCE_COLOURS = ((0, 200, 0), (230, 0, 0))
SEG_SERIES_DESCRIPTION = "medig IG evidence map (not for diagnosis)"
SEG_SERIES_NUMBER = 9930


def on_source_grid(attr_map: np.ndarray, box: np.ndarray, source_shape: tuple[int, ...]
                   ) -> np.ndarray:
    """The model-grid map ``attr_map`` ``(S, S)`` on the source's ``(H, W)`` pixel grid.

    ``box`` is the crop ``(x0, y0, x1, y1)`` in source pixels the model input was cut from
    (:func:`medig.preprocess.crop_boxes`); it is rounded to pixel edges as the crop was. Bilinear
    resampling (pixel centres aligned); float32; zero outside the box.
    """
    h, w = (int(v) for v in source_shape)
    x0, y0, x1, y1 = (int(v) for v in np.round(np.asarray(box, dtype=np.float64)).reshape(4))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty crop box {(x0, y0, x1, y1)}")
    grid = torch.from_numpy(np.asarray(attr_map, dtype=np.float32))[None, None]
    shrink = (y1 - y0) < grid.shape[-2] or (x1 - x0) < grid.shape[-1]
    resized = F.interpolate(grid, size=(y1 - y0, x1 - x0), mode="bilinear",
                            align_corners=False, antialias=shrink)[0, 0].numpy()
    out = np.zeros((h, w), dtype=np.float32)
    xa, xb, ya, yb = max(x0, 0), min(x1, w), max(y0, 0), min(y1, h)
    if xb > xa and yb > ya:
        out[ya:yb, xa:xb] = resized[ya - y0: yb - y0, xa - x0: xb - x0]
    return out


def evidence_threshold(attr_map: np.ndarray, fov: np.ndarray | None = None) -> float:
    """The ``1 - EVIDENCE_FRACTION`` quantile of ``|attr_map|`` over the field of view ``fov``
    (the whole map without one, or when it is empty)."""
    values = np.abs(np.asarray(attr_map, dtype=np.float64))
    if fov is not None and np.asarray(fov).shape == values.shape and np.asarray(fov).any():
        values = values[np.asarray(fov, dtype=bool)]
    return float(np.quantile(values, 1.0 - EVIDENCE_FRACTION)) if values.size else 0.0


def evidence_masks(values: np.ndarray, threshold: float) -> np.ndarray:
    """``(H, W, 2)`` bool: evidence for (``values >= threshold``, and positive) and against
    (``values <= -threshold``, and negative). A map that is zero on most of the field has a zero
    threshold: its segments are then every positive and every negative pixel."""
    values = np.asarray(values)
    t = max(float(threshold), 0.0)
    return np.stack([(values >= t) & (values > 0), (values <= -t) & (values < 0)], axis=-1)


def _colour(rgb: tuple[int, int, int]) -> hd.color.CIELabColor:
    return hd.color.CIELabColor.from_rgb(*rgb)


def evidence_segmentation(
    source: Source,
    masks: np.ndarray,
    *,
    frame: int | None,
    output_key: str,
    instance_number: int,
    description: str,
    created: datetime.datetime | None = None,
) -> Dataset:
    """The Segmentation of ``masks`` ``(H, W, 2)`` (:func:`evidence_masks`) on the source grid.

    ``description`` is the ``ContentDescription`` (how the map was computed). Dates, UIDs and
    errors as :func:`medig.pacs.objects.overlay_capture`.
    """
    masks = np.ascontiguousarray(masks, dtype=bool)
    series_uid = derived_uid("medig-seg-series", source.study_uid, output_key)
    content = hashlib.sha256(np.packbits(masks).tobytes() + str(masks.shape).encode()).hexdigest()
    sop_uid = derived_uid("medig-seg", source.sop_uid, str(frame), output_key, content,
                          _copied_digest(source.dataset), str(instance_number), description)
    with _silent():
        algorithm = hd.AlgorithmIdentificationSequence(
            name="medig Integrated Gradients", version=_software_version().split()[-1],
            family=hd.sr.CodedConcept("123110", "DCM", "Artificial Intelligence"))
        segments = [
            hd.seg.SegmentDescription(
                segment_number=k + 1, segment_label=label,
                segmented_property_category=concept("evidence"),
                segmented_property_type=concept(key), algorithm_type="AUTOMATIC",
                algorithm_identification=algorithm, display_color=_colour(EVIDENCE_COLOURS[k]),
                tracking_uid=derived_uid("medig-seg-tracking", source.sop_uid, str(frame), key),
                tracking_id=f"medig {label}")
            for k, (key, label) in enumerate((("evidence_for", "evidence for"),
                                              ("evidence_against", "evidence against")))]
        seg = hd.seg.Segmentation(
            [stand_in(source, single_frame=True)], masks[None], segmentation_type="BINARY",
            segment_descriptions=segments, series_instance_uid=series_uid,
            series_number=SEG_SERIES_NUMBER, sop_instance_uid=sop_uid,
            instance_number=instance_number, manufacturer=MANUFACTURER,
            manufacturer_model_name="medig", software_versions=_software_version(),
            device_serial_number="-", transfer_syntax_uid=ExplicitVRLittleEndian,
            omit_empty_frames=False, content_label="MEDIG_EVIDENCE",
            content_description=description[:64], series_description=SEG_SERIES_DESCRIPTION)
    restore_references(seg, source, frame)
    # highdicom draws a random dimension organisation UID: one content, one set of UIDs
    dimensions = derived_uid("medig-seg-dimensions", sop_uid)
    for element in seg.iterall():
        if element.keyword == "DimensionOrganizationUID":
            element.value = dimensions
    declare_scheme(seg)
    seg.PatientOrientation = None  # no orientation of the patient is claimed (type 2C)
    if "ContributingEquipmentSequence" in seg:  # highdicom names itself, dated by the clock
        del seg.ContributingEquipmentSequence
    if created is not None:  # else highdicom's dates stay: the content date is type 1
        _stamp(seg, created)
    _apply_copied(seg, source.dataset)
    return seg
