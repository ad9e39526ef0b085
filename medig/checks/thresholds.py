# SPDX-License-Identifier: Apache-2.0
"""Every verdict threshold of the trust checks, in one place, with the measurements that chose it.

All figures below come from ``python bench/trust.py study --threads 1`` (section "trust study"
of ``bench/RESULTS.md``): the demo model audited with the default settings (black + blur
baselines, 1% completeness) on 96 fresh synthetic photographs (``medig.synthetic.generate``,
seed 777001; the model was trained on seeds 1000-1039), 44 of them predicted referable.
Quantiles are written 5% / 25% / median / 75% / 95%.

``BASELINE_AGREEMENT_MIN`` = 0.10
    An image is flagged "baseline-dependent" when the Spearman agreement of its black- and
    blur-baseline maps (16-px cells) is below this: no better than two unrelated maps.
    Independent noise maps through the same pooling give -0.12 / -0.05 / 0.01 / 0.06 / 0.12 at
    256 px (200 pairs, about 190 cells each) and -0.07 / -0.03 / 0.00 / 0.02 / 0.06 at 512 px:
    below 0.10 an agreement is within the spread of unrelated maps at 256 px (and clearly so at
    512 px). On the demo model the agreement is -0.08 / 0.03 / 0.10 / 0.17 / 0.35, so 45 of 96
    images are flagged: its black and blurred references give weakly related maps (their
    strongest 5% cells still overlap 6 times more than chance, median 0.30 against 0.05), which
    is the finding of Sturmfels et al. (Distill 2020) the flag exists to report.

``FAITHFULNESS_MIN`` = 0.0
    An image is flagged "not-faithful" when removing its pixels in the map's order does not lower
    the output sooner than removing them in random order (``faithfulness`` at or below 0, the
    definition of "better than chance"; see :mod:`medig.checks.deletion`). With the audit's
    deletion (4-px patches, blurred fill, log-odds) 44/44 referable and 52/52 non-referable demo
    maps beat random removal (quantiles 0.07 / 0.26 / 0.35 / 0.43 / 0.60 on the referable ones);
    the known-answer test of a model that reads one region gives +0.38 to +0.43 when the map marks
    that region and -0.05 to -0.10 when it marks another (``tests/checks/test_deletion.py``). The
    same maps with
    single-pixel removal beat chance on 37/44 referable images, with the probability instead of
    its log-odds on 36/44 (curves flat at p = 1.000): the check's design, not the threshold,
    decides those cases.

``RANDOMISATION_MAX_SIMILARITY`` = 0.70
    The sanity check passes when the median Spearman similarity of ``|attribution|`` between the
    original and the randomised model's maps, after the last stage of the cascade (head + three
    blocks), is below this. Measured per stage (head first) on 16 of the images:
    explainers that ignore the model (input intensity, an edge map) stay at 1.00 at every stage;
    50% edge map + 50% IG magnitude 0.85 / 0.81 / 0.74 / 0.75; 25% edge map + 75% IG magnitude
    0.81 / 0.73 / 0.63 / 0.63; medig's IG on the demo model (audit sample of 8)
    0.74 / 0.57 / 0.53 / 0.40; IG on an untrained DemoNet 0.65 / 0.45 / 0.67 / 0.69 (a random
    network's map changes with its random weights). 0.70 fails any map that is mostly image
    structure (half or more of an edge map) with a margin of 0.05 and passes the demo model's IG
    with a margin of 0.30. IG multiplies the gradient by ``x - x'`` (the image, or its fine
    detail for the blur baseline), so its maps keep some image structure after randomisation:
    a threshold near 0 would fail IG itself. An untrained ResNet-18
    (224 px, 8 images) stayed at 0.92 / 0.87 / 0.83 / 0.85 and fails: its maps are image
    structure, which is what the check reports (a separate measurement, not in the bench script:
    ``randomisation_test`` with the default IG explainer on ``torchvision.models.resnet18(
    weights=None, num_classes=2)`` (unseeded weights) with ImageNet normalisation folded in, on 8
    synthetic images (seed 4243) resized to 224 px; with the logit explained: 0.91 / 0.87 /
    0.84 / 0.85).

``OUTSIDE_SHARE_MAX`` = 0.25
    An image is flagged "evidence-outside-retina" when more than this share of its
    ``|attribution|`` lies outside the field of view (``outside_fov_share``). Measured with
    ``python bench/outside.py --n 12`` (default audit settings; min / 5% / median / 95% / max):
    the demo model on ``examples/fundus`` (16 frames) 0.004 / 0.006 / 0.029 / 0.045 / 0.056 and
    on 12 fresh synthetic photographs (seed 777001, 256 px) 0.006 / 0.009 / 0.023 / 0.042 /
    0.048; on stamped photographs (seed 777002) the demo model, which ignores the stamp, 0.014 -
    0.050. The corner-stamp model (``--model demo-shortcut``, ``bench/shortcut.py``) gives
    0.445 - 0.518 on its stamped images and 0.043 - 0.071 on clean ones. 0.25 is 3.5 times the
    largest clean share (about 8 times the usual one) and half the smallest stamped one: an IG
    map on the black surround is near zero (``x - x'`` is), so a quarter of the evidence there
    is the model reading the frame.
"""
from __future__ import annotations

__all__ = ["BASELINE_AGREEMENT_MIN", "FAITHFULNESS_MIN", "OUTSIDE_SHARE_MAX",
           "RANDOMISATION_MAX_SIMILARITY", "as_dict"]

#: Agreement of the baselines' maps below which an image is "baseline-dependent".
BASELINE_AGREEMENT_MIN = 0.10
#: Faithfulness at or below which an image is "not-faithful".
FAITHFULNESS_MIN = 0.0
#: Median similarity at the last randomised stage below which the sanity check passes.
RANDOMISATION_MAX_SIMILARITY = 0.70
#: Share of ``|attribution|`` outside the field of view above which an image is
#: "evidence-outside-retina".
OUTSIDE_SHARE_MAX = 0.25


def as_dict() -> dict[str, float]:
    """Every threshold by name (as recorded in ``manifest.json``)."""
    return {"baseline_agreement_min": BASELINE_AGREEMENT_MIN,
            "faithfulness_min": FAITHFULNESS_MIN,
            "randomisation_max_similarity": RANDOMISATION_MAX_SIMILARITY,
            "outside_share_max": OUTSIDE_SHARE_MAX}
