# SPDX-License-Identifier: Apache-2.0
"""Check the shipped demo model on fresh synthetic images: accuracy and where IG points.

Generates images with seeds never used in training, preprocesses them as the audit does
(:class:`medig.preprocess.FundusPreprocess`, lesion masks cropped with the same boxes), and prints

- accuracy, sensitivity and specificity for referable DR;
- on referable images, Integrated Gradients (Captum, Gauss-Legendre, ``--steps`` steps) for the
  referable class with a black and a blurred baseline: the *pointing game* (the strongest positive
  attribution of the channel-summed map falls inside a lesion mask dilated by 5 px) and the
  positive attribution mass inside the dilated masks relative to their share of the field of view.

A model that learned a shortcut (image colour, disc brightness, dust) would still classify well but
would fail the localisation rows. CPU, about two minutes::

    python examples/evaluate_demo_model.py
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients
from torchvision.transforms.functional import gaussian_blur

import medig
from medig.preprocess import FundusPreprocess, crop_boxes
from medig.synthetic import generate

EVAL_SEEDS = range(90210, 90218)  # disjoint from the training seeds (1000-1039) and 5000
CHUNK = 64
DILATE_PX = 5


def disk_dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation of bool (N, 1, H, W) masks by a disk of ``radius`` pixels."""
    r = torch.arange(-radius, radius + 1, dtype=torch.float32)
    disk = ((r[:, None] ** 2 + r[None, :] ** 2) <= radius ** 2).float()[None, None]
    return F.conv2d(mask.float(), disk, padding=radius) > 0.5


def blur_baseline(x: torch.Tensor) -> torch.Tensor:
    sigma = x.shape[-1] / 20
    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(x, [k, k], [sigma, sigma])


def load_eval_set(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    pre = FundusPreprocess(size=size)
    xs, ms, fovs, ys = [], [], [], []
    for seed in EVAL_SEEDS:
        raw, lesions, labels = generate(CHUNK, size=size, seed=seed)
        with torch.no_grad():
            x, fov, boxes = pre.forward_with_boxes(raw)
            m = crop_boxes(lesions.float(), boxes, size, mode="nearest") > 0.5
        xs.append(x)
        ms.append(m & fov)
        fovs.append(fov)
        ys.append(labels)
    return torch.cat(xs), torch.cat(ms), torch.cat(fovs), torch.cat(ys)


def localisation(attr: torch.Tensor, near: torch.Tensor, fov: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: pointing-game hit, positive mass fraction in ``near``, area fraction of ``near``."""
    amap = attr.sum(1, keepdim=True).masked_fill(~fov, float("-inf"))
    top = amap.flatten(1).argmax(1)
    hit = near.flatten(1).gather(1, top[:, None]).squeeze(1)
    pos = amap.clamp(min=0).nan_to_num(posinf=0.0).flatten(1)
    mass = (pos * near.flatten(1)).sum(1) / pos.sum(1).clamp(min=1e-12)
    area = near.flatten(1).sum(1) / fov.flatten(1).sum(1)
    return hit, mass, area


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ig-images", type=int, default=128, help="referable images explained")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    loaded = medig.load_model("demo")
    model = loaded.model
    for p in model.parameters():
        p.requires_grad_(False)  # gradients w.r.t. the input only: ~1.5x faster on CPU
    size = loaded.input_size or 256
    x, lesions, fov, labels = load_eval_set(size)

    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 64]).argmax(1) for i in range(0, len(x), 64)])
    acc = float((pred == labels).float().mean())
    sens = float((pred[labels == 1] == 1).float().mean())
    spec = float((pred[labels == 0] == 0).float().mean())

    ig = IntegratedGradients(model)
    pos = torch.nonzero(labels == 1).flatten()[: args.ig_images]
    near = disk_dilate(lesions[pos], DILATE_PX) & fov[pos]
    rows = []
    for name, make in (("black", torch.zeros_like), ("blur", blur_baseline)):
        hits, masses, areas, rel = [], [], [], []
        for i in range(0, len(pos), 8):
            xb = x[pos[i:i + 8]]
            attr, delta = ig.attribute(xb, baselines=make(xb), target=1, n_steps=args.steps,
                                       internal_batch_size=64, return_convergence_delta=True)
            with torch.no_grad():
                gap = model(xb)[:, 1] - model(make(xb))[:, 1]
            h, m, a = localisation(attr, near[i:i + 8], fov[pos[i:i + 8]])
            hits.append(h)
            masses.append(m)
            areas.append(a)
            rel.append(delta.abs() / gap.abs().clamp(min=1e-6))
        hit, mass, area, err = (torch.cat(t).float() for t in (hits, masses, areas, rel))
        rows.append((name, float(hit.mean()), float(mass.mean()), float(area.mean()),
                     float((mass / area).median()), float(err.median())))

    print(f"\nDemo model on {len(x)} fresh synthetic images (seeds {EVAL_SEEDS.start}-"
          f"{EVAL_SEEDS.stop - 1}), {size} px, {time.perf_counter() - start:.0f} s")
    print(f"  accuracy {acc:.3f}   sensitivity {sens:.3f}   specificity {spec:.3f}   "
          f"({int(labels.sum())} referable)")
    print(f"\nIG localisation on {len(pos)} referable images (masks dilated {DILATE_PX} px, "
          f"{args.steps} steps)")
    print(f"  {'baseline':<9}{'pointing':>9}{'mass in':>9}{'area':>8}{'ratio':>8}{'IG rel.err':>12}")
    for name, hit, mass, area, ratio, err in rows:
        print(f"  {name:<9}{hit:>9.3f}{mass:>9.3f}{area:>8.3f}{ratio:>8.1f}{err:>12.3f}")
    print("  (pointing: share of images whose top attribution is in a dilated lesion; mass in: "
          "share of positive attribution inside; area: their share of the field; ratio: median "
          "per-image mass/area)")


if __name__ == "__main__":
    main()
