# SPDX-License-Identifier: Apache-2.0
"""Batch step ``RegionEvidence``: the columns are those of :mod:`medig.checks.regions` on the
anatomy of :func:`medig.preprocess.find_anatomy`, rounded and JSON-clean."""
from __future__ import annotations

import json

import pytest

from medig.audit.steps.explain import Explain
from medig.audit.steps.predict import Predict
from medig.audit.steps.preprocess import Preprocess
from medig.audit.steps.regions import RegionEvidence
from medig.checks.regions import region_evidence, top_regions
from medig.preprocess import REGIONS, find_anatomy
from tests.audit.steps.kit import make_batch, make_context, settings


def test_columns_are_those_of_the_region_functions(tmp_path) -> None:
    ctx = make_context(tmp_path / "out", settings())
    batch = make_batch(ctx, tmp_path / "in", n=2, seed=3)
    for step in (Preprocess(ctx), Predict(ctx), Explain(ctx)):
        step(batch)
    RegionEvidence()(batch)
    regions = find_anatomy(batch.images, batch.fov).regions()
    expected = region_evidence(batch.maps, regions)
    tops = top_regions(batch.maps, regions)
    for fields, ev, top in zip(batch.fields, expected, tops):
        assert list(fields["region_evidence"]) == list(REGIONS)
        for name in REGIONS:
            for part in ("pos", "neg", "area"):
                assert fields["region_evidence"][name][part] == pytest.approx(
                    ev[name][part], abs=1e-4)
        assert [t["on"] for t in fields["top_regions"]] == [t["on"] for t in top]
        json.dumps(fields, allow_nan=False)  # no NaN in a result row
