# SPDX-License-Identifier: Apache-2.0
"""Audit step ``SanityCheck``: model randomisation on a fixed sample of the stored images, kept in
``.medig/sanity.json``, and the trust checks' thresholds in the manifest."""
from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch

import medig.audit.steps.sanity as sanity_step
from medig.audit.steps import batch_steps
from medig.audit.steps.sanity import SANITY_SEED, SanityCheck
from medig.audit.store import DamagedWorkError
from medig.checks import checks_manifest, randomisation_test
from tests.audit.steps.kit import finished, make_batch, make_context, settings
from tests.audit.tiny_models import make_tiny


@pytest.fixture
def stored(tmp_path):
    """Three explained photographs in the work store, and their final rows (plus an error)."""
    ctx = make_context(tmp_path / "out", settings(sanity_sample=2))
    batch = make_batch(ctx, tmp_path / "in", n=3, seed=15)
    for step in batch_steps(ctx):
        step(batch)
    rows = [{"status": "ok", "path": it.rel, "target_index": int(t)}
            for it, t in zip(batch.inputs, batch.target)]
    rows.append({"status": "error", "path": "bad.png", "target_index": None})
    return ctx, batch, rows


def _check(ctx, batch, rows, model=None, **changes):
    plan = dataclasses.replace(ctx.plan, settings=dataclasses.replace(ctx.settings, **changes))
    ctx = dataclasses.replace(ctx, plan=plan)
    audit = finished(ctx, batch.inputs, rows, batch.keys, model=model)
    SanityCheck()(audit)
    return audit.manifest["trust_checks"]


def test_the_sample_is_checked_as_randomisation_test_checks_it(stored) -> None:
    ctx, batch, rows = stored
    trust = _check(ctx, batch, rows, model=make_tiny())
    assert {k: v for k, v in trust.items() if k != "sanity_check"} == checks_manifest()
    sanity = trust["sanity_check"]
    # the sample: seeded, drawn from the explained rows sorted by path
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["path"])
    chosen = sorted(random.Random(SANITY_SEED).sample(range(len(ok)), 2))
    assert sanity["images"] == [ok[i]["path"] for i in chosen]
    # the same check on the same (stored) pixels, independently
    index = [[it.rel for it in batch.inputs].index(ok[i]["path"]) for i in chosen]
    x = torch.stack([torch.from_numpy(ctx.store.load_arrays(batch.keys[j], 0, "image")["image"])
                     for j in index]).float() / 255
    fov = torch.stack([torch.from_numpy(ctx.store.load_arrays(batch.keys[j], 0, "fov")["fov"])
                       for j in index]).bool()
    expected = randomisation_test(make_tiny(), x, torch.tensor([ok[i]["target_index"]
                                                                for i in chosen]),
                                  fov=fov, baselines=("black",), output="probability", seed=0)
    assert sanity["status"] == ("passed" if expected.passed else "failed")
    assert sanity["stages"] == expected.stages and sanity["threshold"] == expected.threshold
    assert sanity["similarity"] == pytest.approx(expected.stage_similarity, abs=1e-4)
    assert np.array(sanity["per_image_similarity"]).shape == (len(expected.stages), 2)


def test_the_outcome_is_kept_and_reused_under_the_same_key(stored, monkeypatch) -> None:
    ctx, batch, rows = stored
    first = _check(ctx, batch, rows, model=make_tiny())["sanity_check"]
    assert json.loads((ctx.store.root / "sanity.json").read_text())["result"] == first

    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(sanity_step, "randomisation_test", fail)
    assert _check(ctx, batch, rows, model=make_tiny())["sanity_check"] == first
    # another sample size is another key: recomputed (here: fails, and says why)
    other = _check(ctx, batch, rows, model=make_tiny(), sanity_sample=3)["sanity_check"]
    assert other == {"status": "not run", "reason": "AssertionError: recomputed"}


@pytest.mark.parametrize("changes, model, rows_kept, reason", [
    ({"sanity_sample": 0}, True, "all", "--sanity-sample 0"),
    ({}, False, "all", "no model (report rebuilt from results)"),
    ({}, True, "errors", "no explained images"),
])
def test_when_the_check_does_not_run_it_says_why(stored, changes, model, rows_kept,
                                                 reason) -> None:
    ctx, batch, rows = stored
    rows = rows if rows_kept == "all" else [r for r in rows if r["status"] != "ok"]
    sanity = _check(ctx, batch, rows, model=make_tiny() if model else None,
                    **changes)["sanity_check"]
    assert sanity["reason"] == reason
    assert sanity["status"] == ("disabled" if changes else "not run")
    assert not (ctx.store.root / "sanity.json").exists()


def test_missing_stored_work_is_sent_back_to_be_computed_again(stored) -> None:
    ctx, batch, rows = stored
    for key in batch.keys:
        ctx.store.array_path(key, 0).unlink()
    with pytest.raises(DamagedWorkError) as raised:
        _check(ctx, batch, rows, model=make_tiny())
    assert raised.value.keys and raised.value.keys <= set(batch.keys)
