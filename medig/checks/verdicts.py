# SPDX-License-Identifier: Apache-2.0
"""Per-image trust flags from the checks' figures and the thresholds of
:mod:`medig.checks.thresholds`."""
from __future__ import annotations

import math
from typing import Any

import medig.checks.thresholds as thresholds

__all__ = ["TRUST_FLAGS", "trust_flags"]

#: Every flag :func:`trust_flags` can raise, in the order they are listed.
TRUST_FLAGS = ("incomplete", "baseline-dependent", "not-faithful", "evidence-outside-retina")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def trust_flags(
    flagged: bool | None,
    baseline_agreement: float | None = None,
    faithfulness: float | None = None,
    agreement_min: float = thresholds.BASELINE_AGREEMENT_MIN,
    faithfulness_min: float = thresholds.FAITHFULNESS_MIN,
    outside_fov_share: float | None = None,
    outside_share_max: float = thresholds.OUTSIDE_SHARE_MAX,
) -> list[str]:
    """The reasons not to trust one image's map, drawn from :data:`TRUST_FLAGS`.

    - ``"incomplete"``: the attribution missed the completeness tolerance (``flagged``);
    - ``"baseline-dependent"``: the baselines' maps agree less than ``agreement_min``;
    - ``"not-faithful"``: removing pixels in the map's order does not lower the output more than
      removing them at random (``faithfulness`` at most ``faithfulness_min``);
    - ``"evidence-outside-retina"``: more than ``outside_share_max`` of ``|attribution|`` lies
      outside the field of view (``outside_fov_share``, :func:`medig.checks.outside_fov_share`).

    A figure that was not measured (None or NaN: one baseline, an output that never moved) raises
    no flag.
    """
    flags = []
    if flagged:
        flags.append("incomplete")
    agreement = _number(baseline_agreement)
    if agreement is not None and agreement < agreement_min:
        flags.append("baseline-dependent")
    faithful = _number(faithfulness)
    if faithful is not None and faithful <= faithfulness_min:
        flags.append("not-faithful")
    outside = _number(outside_fov_share)
    if outside is not None and outside > outside_share_max:
        flags.append("evidence-outside-retina")
    return flags
