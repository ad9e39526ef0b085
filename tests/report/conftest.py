# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

from pathlib import Path

import pytest
from report_fake_audit import CLASSES, make_row, write_audit


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    rows = [
        make_row(
            "clinic A/eye_001.png",
            laterality="R",
            pointing_hit=True,
            mask_mass_fraction=0.345,
            mask_area_fraction=0.051,
        ),
        make_row(
            "clinic A/eye_002.jpg",
            predicted=CLASSES[0],
            predicted_index=0,
            probabilities={CLASSES[0]: 0.91, CLASSES[1]: 0.09},
            relative_error=0.0731,
            delta=0.033,
            n_steps=512,
            flagged=True,
            laterality="L",
            pointing_hit=False,
            mask_mass_fraction=0.02,
            mask_area_fraction=0.04,
        ),
        make_row(
            "clinic B/broken.dcm",
            status="error",
            error="not a DICOM file: missing preamble",
            predicted=None,
            predicted_index=None,
            probabilities=None,
            target=None,
            target_index=None,
            score=None,
            baseline_score=None,
            delta=None,
            relative_error=None,
            n_steps=None,
            flagged=None,
            overlay=None,
        ),
        make_row(
            "R&D <test>/Ångström ü 眼底.png", relative_error=0.0155, n_steps=200, flagged=True
        ),
    ]
    return write_audit(tmp_path / "audit", rows)
