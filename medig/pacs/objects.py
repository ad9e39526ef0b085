# SPDX-License-Identifier: Apache-2.0
"""The DICOM objects medig files to a patient's study, built with highdicom.

* :func:`overlay_capture`: a **Secondary Capture Image** (1.2.840.10008.5.1.4.1.1.7) of one
  image's overlay: RGB, ``BurnedInAnnotation`` YES (the caption), ``SourceImageSequence`` and
  ``ReferencedImageSequence`` pointing at the source SOP instance (and frame), in a new series of
  the source's study (:data:`OVERLAY_SERIES_DESCRIPTION`).
* :func:`study_document`: an **Encapsulated PDF** (1.2.840.10008.5.1.4.1.1.104.1) of a study's
  page, its ``SourceInstanceSequence`` listing every source image of the study.

Both copy the patient and study attributes :data:`COPIED_ATTRIBUTES` from the source, element by
element (value and VR unchanged); an attribute the source lacks is left out, or empty when the IOD
requires it (type 2). Nothing else of the source is copied, and nothing of it is handed to
highdicom, whose checks would refuse values the source may hold (an odd patient sex, a date
pydicom reads but highdicom does not, a character set it does not list). The text is written in
the source's character set, in the form a new object may carry (:mod:`medig.pacs.charset`).

The objects' own dates (``ContentDate``/``Time``, ``InstanceCreationDate``/``Time``, the date of
secondary capture) are the audit's, passed as ``created`` (its first run's start), never the clock
of the build: a re-run, or an object rebuilt after it was deleted, is byte-identical.

UIDs are derived (:func:`medig.pacs.uids.derived_uid`) from the source UIDs, the audit's output
key and a digest of the object's content, so that one content has one UID: a re-run rebuilds the
same UIDs and a PACS stores nothing twice, while changed content (new settings, a new colour
scale, new wording) is a new instance, never a silent replacement under an old UID.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)

from medig.io._quiet import quiet
from medig.io.dicom_ids import dicom_ids, read_dicom_header
from medig.pacs.charset import derived_charset, settle_charset
from medig.pacs.uids import derived_uid

__all__ = [
    "COPIED_ATTRIBUTES",
    "DOCUMENT_SERIES_DESCRIPTION",
    "OVERLAY_SERIES_DESCRIPTION",
    "Source",
    "overlay_capture",
    "read_source",
    "study_document",
]

#: Patient and study attributes copied from the source image (Patient, General Study and Patient
#: Study modules), plus the character set their text is encoded in.
COPIED_ATTRIBUTES: tuple[str, ...] = (
    "SpecificCharacterSet",
    # Patient module
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    # General Study module
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "StudyDescription",
    # Patient Study module
    "PatientAge", "PatientSize", "PatientWeight",
)

OVERLAY_SERIES_DESCRIPTION = "medig IG overlay (not for diagnosis)"
DOCUMENT_SERIES_DESCRIPTION = "medig IG study report (not for diagnosis)"
DOCUMENT_TITLE = "medig Integrated Gradients study report (not a diagnosis)"
#: Series numbers of medig's series in a study: overlays per eye, and the study report.
OVERLAY_SERIES_NUMBER = {"R": 9901, "L": 9902, None: 9903}
DOCUMENT_SERIES_NUMBER = 9910
MANUFACTURER = "medig"

# DCM 121322: "Source image for image processing operation" (PS3.16 CID 7202).
_PURPOSE = ("121322", "DCM", "Source image for image processing operation")


@dataclass(frozen=True)
class Source:
    """The header of a source DICOM image (identifying: stays inside DICOM output)."""

    dataset: Dataset
    study_uid: str
    sop_uid: str
    sop_class_uid: str
    frames: int

    def __repr__(self) -> str:  # never print the UIDs or the header in a log or traceback
        return f"Source(frames={self.frames})"


def read_source(path: str | os.PathLike) -> Source | None:
    """The header of a source DICOM file (read as :func:`medig.io.dicom_ids.read_dicom_header`
    reads it), or None if it has no valid study, SOP instance or SOP class UID."""
    ds = read_dicom_header(path)
    if ds is None:
        return None
    ids = dicom_ids(ds)
    if not (ids.study_uid and ids.sop_uid and ids.sop_class_uid):
        return None
    return Source(ds, ids.study_uid, ids.sop_uid, ids.sop_class_uid, ids.frames)


def object_uid(path: str | os.PathLike) -> str | None:
    """The SOP Instance UID of a DICOM object medig wrote, or None if it cannot be read."""
    try:
        with quiet():
            return str(pydicom.dcmread(path, stop_before_pixels=True,
                                       specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
    except Exception:  # noqa: BLE001 - unreadable (or missing): the caller rewrites or reports it
        return None


@contextlib.contextmanager
def _silent() -> Iterator[None]:
    """highdicom logs the source's UIDs (info) and warns quoting odd patient names: neither may
    reach the console. Its child loggers inherit the level set here."""
    logger = logging.getLogger("highdicom")
    was = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with quiet():
            yield
    finally:
        logger.setLevel(was)


def _copied(source: Dataset) -> list[pydicom.DataElement]:
    with quiet():  # a value decoded in an unknown character set makes pydicom warn, quoting it
        return [copy.deepcopy(source[name]) for name in COPIED_ATTRIBUTES if name in source]


def _copied_digest(source: Dataset) -> str:
    values = [(e.keyword, e.VR, str(e.value)) for e in _copied(source)]
    return json.dumps(values, ensure_ascii=False)


def stand_in(source: Source, single_frame: bool = False) -> Dataset:
    """What highdicom is given of ``source`` when it builds an object from it: the UIDs and the
    image size, no patient or study text (copied afterwards by :func:`_apply_copied`).

    ``single_frame``: the stand-in claims the Secondary Capture class, which holds one frame;
    highdicom builds Segmentations only from sources with a Frame of Reference or of a
    single-frame class, and a fundus photograph (a multi-frame class, no Frame of Reference) is
    neither. :func:`restore_references` puts the source's class (and frame) back.
    """
    ds = source.dataset
    item = Dataset()
    item.SOPClassUID = SecondaryCaptureImageStorage if single_frame else source.sop_class_uid
    item.SOPInstanceUID = source.sop_uid
    item.StudyInstanceUID = source.study_uid
    item.SeriesInstanceUID = str(ds.get("SeriesInstanceUID") or
                                 derived_uid("medig-source-series", source.sop_uid))
    for name in ("Rows", "Columns", "Modality"):
        if name in ds:
            setattr(item, name, ds[name].value)
    for name in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                 "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        setattr(item, name, None)
    return item


def restore_references(ds: Dataset, source: Source, frame: int | None) -> None:
    """Every reference of ``ds`` to the source instance names the source's own SOP class and,
    for a frame of a multi-frame source, that frame (undoing :func:`stand_in`)."""
    for item in _items(ds):
        if item.get("ReferencedSOPInstanceUID") == source.sop_uid:
            item.ReferencedSOPClassUID = source.sop_class_uid
            if frame is not None and source.frames > 1:
                item.ReferencedFrameNumber = frame + 1  # DICOM frame numbers start at 1
            elif "ReferencedFrameNumber" in item:
                del item.ReferencedFrameNumber


def _items(ds: Dataset) -> Iterator[Dataset]:
    """Every item of every sequence in ``ds``, nested ones included."""
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                yield item
                yield from _items(item)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _reference(source: Source, frame: int | None, purpose: bool) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.sop_class_uid
    item.ReferencedSOPInstanceUID = source.sop_uid
    if frame is not None and source.frames > 1:
        item.ReferencedFrameNumber = frame + 1  # DICOM frame numbers start at 1
    if purpose:
        item.PurposeOfReferenceCodeSequence = [_code(*_PURPOSE)]
    return item


def _apply_copied(ds: Dataset, source: Dataset) -> None:
    """Copy :data:`COPIED_ATTRIBUTES` from ``source`` into ``ds``, the text in the source's
    character set (:func:`medig.pacs.charset.derived_charset`, which may refuse the source)."""
    charset = derived_charset(source, COPIED_ATTRIBUTES)
    for element in _copied(source):
        if element.keyword != "SpecificCharacterSet":
            ds[element.tag] = element
    settle_charset(ds, charset)


#: The dates and times of an object: (date, time, type 2: present even when empty).
_STAMPS = (("ContentDate", "ContentTime", True),
           ("InstanceCreationDate", "InstanceCreationTime", False),
           ("DateOfSecondaryCapture", "TimeOfSecondaryCapture", False))


def _stamp(ds: Dataset, created: datetime.datetime | None) -> None:
    """Date the object ``created`` (local time, as DICOM dates are), replacing the build's clock
    that highdicom put in; without a time, type 2 dates are empty and the others absent."""
    local = None
    if created is not None:
        aware = created if created.tzinfo else created.replace(tzinfo=datetime.timezone.utc)
        local = aware.astimezone()
    for date, time, type2 in _STAMPS:
        if date not in ds:  # not in this IOD
            continue
        if local is not None:
            setattr(ds, date, local.strftime("%Y%m%d"))
            setattr(ds, time, local.strftime("%H%M%S"))
        elif type2:
            setattr(ds, date, None)
            setattr(ds, time, None)
        else:
            for name in (date, time):
                if name in ds:
                    delattr(ds, name)


def _software_version() -> str:
    import medig

    return f"medig {medig.__version__}"


def overlay_capture(
    source: Source,
    picture: np.ndarray,
    *,
    frame: int | None,
    laterality: str | None,
    output_key: str,
    instance_number: int,
    derivation: str,
    created: datetime.datetime | None = None,
) -> Dataset:
    """The Secondary Capture of one image's overlay.

    Parameters
    ----------
    source : Source
        The source image's header.
    picture : numpy.ndarray
        ``(H, W, 3)`` uint8 RGB: the overlay with its caption burned in.
    frame : int or None
        0-based frame of a multi-frame source.
    laterality : str or None
        ``"R"`` or ``"L"``: the series' Laterality (one series per eye), else None.
    output_key : str
        Hash of everything that shapes the outputs (settings, colour scale).
    instance_number : int
        The instance's number in its series.
    derivation : str
        ``DerivationDescription``: how the overlay was computed.
    created : datetime.datetime, optional
        When the audit made the object (its first run's start): the object's dates. None leaves
        them empty.

    Raises
    ------
    medig.pacs.charset.UncopyableText
        The source's patient or study text cannot be copied with certainty.
    """
    lat = laterality if laterality in ("R", "L") else None
    series_uid = derived_uid("medig-overlay-series", source.study_uid, output_key, str(lat))
    pixels = np.ascontiguousarray(picture, dtype=np.uint8)
    content = hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()
    sop_uid = derived_uid("medig-overlay", source.sop_uid, str(frame), output_key, content,
                          _copied_digest(source.dataset), str(instance_number), derivation)
    with _silent():
        sc = hd.sc.SCImage(
            pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
            coordinate_system="PATIENT", study_instance_uid=source.study_uid,
            series_instance_uid=series_uid, series_number=OVERLAY_SERIES_NUMBER[lat],
            sop_instance_uid=sop_uid, instance_number=instance_number,
            manufacturer=MANUFACTURER, patient_orientation=("L", "F"), laterality=lat,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            series_description=OVERLAY_SERIES_DESCRIPTION, manufacturer_model_name="medig",
            software_versions=_software_version())
    # The picture is cropped, resized and captioned: no orientation of the patient is claimed.
    # None writes the element empty; highdicom's constructor made mypy infer list[str]
    sc.PatientOrientation = None  # type: ignore[assignment]
    if "ContributingEquipmentSequence" in sc:  # highdicom names itself, dated by the clock
        del sc.ContributingEquipmentSequence
    _stamp(sc, created)
    sc.BurnedInAnnotation = "YES"
    sc.DerivationDescription = derivation[:1024]
    sc.SourceImageSequence = [_reference(source, frame, purpose=True)]
    sc.ReferencedImageSequence = [_reference(source, frame, purpose=False)]
    _apply_copied(sc, source.dataset)  # last: the character set must hold medig's text too
    return sc


def study_document(
    sources: Sequence[Source],
    pdf: bytes,
    *,
    output_key: str,
    created: datetime.datetime | None = None,
) -> Dataset:
    """The Encapsulated PDF of a study's page; patient and study come from ``sources[0]``.

    ``EncapsulatedDocument`` holds ``pdf`` (padded to an even length as DICOM requires) and
    ``EncapsulatedDocumentLength`` its exact length, so the PDF comes back byte for byte.
    ``created`` dates the object as in :func:`overlay_capture`; the same errors are raised.
    """
    first = sources[0]
    series_uid = derived_uid("medig-document-series", first.study_uid, output_key)
    unique = sorted({(s.sop_class_uid, s.sop_uid) for s in sources})
    content = hashlib.sha256(pdf).hexdigest()
    sop_uid = derived_uid("medig-document", first.study_uid, output_key, content,
                          _copied_digest(first.dataset), json.dumps(unique))
    ref = first.dataset
    with _silent():
        ds = hd.base.SOPClass(
            study_instance_uid=first.study_uid, series_instance_uid=series_uid,
            series_number=DOCUMENT_SERIES_NUMBER, sop_instance_uid=sop_uid,
            sop_class_uid=EncapsulatedPDFStorage, instance_number=1, modality="DOC",
            manufacturer=MANUFACTURER, transfer_syntax_uid=ExplicitVRLittleEndian,
            series_description=DOCUMENT_SERIES_DESCRIPTION, manufacturer_model_name="medig",
            software_versions=_software_version())
    _stamp(ds, created)
    ds.ConversionType = "WSD"  # SC Equipment: made on a workstation
    ds.BurnedInAnnotation = "NO"  # the page names no patient: the header does
    ds.DocumentTitle = DOCUMENT_TITLE
    ds.ConceptNameCodeSequence = []
    ds.AcquisitionDateTime = None
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    items = []
    for sop_class, sop in unique:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop
        items.append(item)
    ds.SourceInstanceSequence = items
    _apply_copied(ds, ref)
    return ds
