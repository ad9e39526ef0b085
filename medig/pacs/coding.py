# SPDX-License-Identifier: Apache-2.0
"""The codes of medig's DICOM Structured Reports and Segmentations.

DICOM (``DCM``) and SNOMED CT (``SCT``) codes are used where the standard has one for the
concept; every other concept is coded in medig's private scheme :data:`SCHEME` (``99MEDIG``:
PS3.16 8.2 reserves designators beginning with ``99`` for private schemes), whose codes are
listed in :data:`CONCEPTS` and :data:`VERDICTS` and documented in one table in ``docs/pacs.md``.

Classes: a model's class name that :data:`CLASS_CODES` knows (compared without case, spaces,
hyphens and underscores) gets its SNOMED CT code; any other name gets a private code whose value is
``C`` and the first 12 hex digits of the SHA-256 of the name (one name, one code, in every
audit) and whose meaning is the name itself.
"""
from __future__ import annotations

import hashlib
import re

from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset

__all__ = ["CLASS_CODES", "CONCEPTS", "SCHEME", "UNITLESS", "VERDICTS", "class_code", "concept",
           "declare_scheme", "verdict"]

SCHEME = "99MEDIG"

#: medig's concepts: key -> (code value, code meaning). Numeric items (NUM) first, then the
#: coded (CODE) and text (TEXT) items of a measurement group.
CONCEPTS: dict[str, tuple[str, str]] = {
    # numeric figures of one image (the result row's column in brackets in the docs)
    "score": ("MDG001", "Explained target score F(x)"),
    "predicted_probability": ("MDG002", "Probability of the predicted class"),
    "baseline_score": ("MDG003", "Baseline score F(x')"),
    "delta": ("MDG004", "Completeness gap"),
    "relative_error": ("MDG005", "Relative completeness error"),
    "abs_tol": ("MDG006", "Completeness tolerance"),
    "map_error": ("MDG007", "Estimated map error"),
    "n_steps": ("MDG008", "Gradient evaluations"),
    "baseline_agreement": ("MDG009", "Baseline agreement"),
    "faithfulness": ("MDG010", "Faithfulness"),
    "map_scale": ("MDG011", "Largest absolute attribution"),
    "map_threshold": ("MDG012", "Evidence threshold"),
    # coded and text items
    "predicted": ("MDG101", "Predicted class"),
    "target": ("MDG102", "Explained target"),
    "predicted_name": ("MDG103", "Predicted class name"),
    "target_name": ("MDG104", "Explained target name"),
    "completeness": ("MDG105", "Completeness verdict"),
    "agreement_verdict": ("MDG106", "Baseline agreement verdict"),
    "faithfulness_verdict": ("MDG107", "Faithfulness verdict"),
    "sanity_check": ("MDG108", "Model randomisation sanity check"),
    "quality": ("MDG109", "Image quality verdict"),
    "quality_reason": ("MDG110", "Image quality reason"),
    "trust_flag": ("MDG111", "Trust flag"),
    "flag_reason": ("MDG112", "Flag reason"),
    # the procedure reported, and the two segments of the evidence map
    "procedure": ("MDG201", "Integrated Gradients attribution audit"),
    "evidence": ("MDG202", "Attribution evidence"),
    "evidence_for": ("MDG203", "Evidence for the explained target"),
    "evidence_against": ("MDG204", "Evidence against the explained target"),
}

#: The values of the coded verdicts: (row value) -> (code value, code meaning).
VERDICTS: dict[str, tuple[str, str]] = {
    "complete": ("MDG301", "Complete"),
    "incomplete": ("MDG302", "Incomplete"),
    "agree": ("MDG303", "Baselines agree"),
    "baseline-dependent": ("MDG304", "Baseline-dependent"),
    "faithful": ("MDG305", "Faithful"),
    "not-faithful": ("MDG306", "Not faithful"),
    "passed": ("MDG307", "Passed"),
    "failed": ("MDG308", "Failed"),
    "not run": ("MDG309", "Not run"),
    "disabled": ("MDG310", "Disabled"),
    "not measured": ("MDG311", "Not measured"),
    "gradeable": ("MDG312", "Gradeable"),
    "ungradeable": ("MDG313", "Ungradeable"),
    "not_fundus": ("MDG314", "Not a fundus photograph"),
}

#: Class names with a SNOMED CT code (normalised: lower case, no spaces, hyphens or underscores).
CLASS_CODES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("healthy", "normal", "nodr", "norefdr", "noreferabledr", "0"),
                    ("17621005", "Normal")),
    **dict.fromkeys(("dr", "diabeticretinopathy", "referable", "referabledr", "rdr"),
                    ("4855003", "Diabetic retinopathy")),
    **dict.fromkeys(("mild", "mildnpdr", "milddr"),
                    ("312903003", "Mild nonproliferative diabetic retinopathy")),
    **dict.fromkeys(("moderate", "moderatenpdr", "moderatedr"),
                    ("312904009", "Moderate nonproliferative diabetic retinopathy")),
    **dict.fromkeys(("severe", "severenpdr", "severedr"),
                    ("312905005", "Severe nonproliferative diabetic retinopathy")),
    **dict.fromkeys(("proliferative", "pdr", "proliferativedr"),
                    ("59276001", "Proliferative diabetic retinopathy")),
    **dict.fromkeys(("glaucoma",), ("23986001", "Glaucoma")),
    **dict.fromkeys(("amd", "agerelatedmaculardegeneration"),
                    ("267718000", "Age-related macular degeneration")),
}

#: UCUM's unit of a dimensionless figure.
UNITLESS = CodedConcept("1", "UCUM", "no units")


def declare_scheme(ds: Dataset) -> None:
    """Name medig's private scheme in ``ds`` (SOP Common ``CodingSchemeIdentificationSequence``),
    so that a reader of the object learns who defines its ``99MEDIG`` codes."""
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "medig Integrated Gradients audit codes"
    item.CodingSchemeResponsibleOrganization = "medig (docs/pacs.md, Codes)"
    ds.CodingSchemeIdentificationSequence = [item]


def concept(key: str) -> CodedConcept:
    """The coded concept of :data:`CONCEPTS` ``key``."""
    value, meaning = CONCEPTS[key]
    return CodedConcept(value, SCHEME, meaning)


def verdict(value: str) -> CodedConcept:
    """The code of a verdict value of :data:`VERDICTS`."""
    code, meaning = VERDICTS[value]
    return CodedConcept(code, SCHEME, meaning)


def _normalised(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).lower()


def class_code(name: str) -> CodedConcept:
    """The code of a model's class ``name`` (see the module docstring)."""
    known = CLASS_CODES.get(_normalised(name))
    if known is not None:
        return CodedConcept(known[0], "SCT", known[1])
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    # a code meaning is LO: no backslash or control characters
    meaning = re.sub(r"[\\\x00-\x1f\x7f]", " ", name.encode("utf-8", "replace").decode())
    return CodedConcept(f"C{digest.upper()}", SCHEME, meaning.strip()[:64] or "unnamed class")
