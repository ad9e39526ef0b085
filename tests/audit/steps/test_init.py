# SPDX-License-Identifier: Apache-2.0
"""The steps of an audit, in the order they run (``batch_steps``, ``audit_steps``)."""
from __future__ import annotations

from medig.audit.steps import audit_steps, batch_steps
from tests.audit.steps.kit import make_context, settings


def _names(steps) -> list[str]:
    return [type(s).__name__ for s in steps]


def test_batch_steps_in_order(tmp_path) -> None:
    # The trust checks read the explanation, and the arrays are stored last, once every step
    # that may drop an image has run.
    assert _names(batch_steps(make_context(tmp_path / "out"))) == [
        "Preprocess", "Laterality", "StudyIdentity", "Quality", "Predict", "Explain",
        "TrustChecks", "StoreArrays"]


def test_audit_steps_before_and_after_the_report() -> None:
    class Extra:
        def __call__(self, audit) -> None: ...

    extra = Extra()
    before, after = audit_steps(settings(), [extra])
    assert _names(before) == ["RecordTarget", "RecordCompletenessRule", "IdentifyRows",
                              "Localise", "NameAttributions", "SanityCheck", "QualitySummary"]
    assert _names(after) == ["StudyPages", "Extra"] and after[-1] is extra
    # without the quality gate there are no verdicts to count
    before, after = audit_steps(settings(quality="off"))
    assert "QualitySummary" not in _names(before) and _names(after) == ["StudyPages"]
