# SPDX-License-Identifier: Apache-2.0
"""Every verdict threshold of the trust checks, in one place (provisional)."""
from __future__ import annotations

BASELINE_AGREEMENT_MIN = 0.1
FAITHFULNESS_MIN = 0.0
RANDOMISATION_MAX_SIMILARITY = 0.7


def as_dict() -> dict[str, float]:
    """Every threshold by name (as recorded in ``manifest.json``)."""
    return {"baseline_agreement_min": BASELINE_AGREEMENT_MIN,
            "faithfulness_min": FAITHFULNESS_MIN,
            "randomisation_max_similarity": RANDOMISATION_MAX_SIMILARITY}
