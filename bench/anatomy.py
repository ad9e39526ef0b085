# SPDX-License-Identifier: Apache-2.0
"""Cost of the anatomy, region-evidence and outside-share steps against the default audit, side by
side on the same images (CPU, one thread unless --threads)::

    python bench/anatomy.py [--n 24] [--size 256] [--threads 1]

The steps are timed in-process on the preprocessed images and real IG maps of the demo model; the
audit is ``medig audit`` with default settings (sanity check off: a fixed cost per audit), its
time per image from its own summary.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

import medig
from medig.checks import outside_fov_share
from medig.checks.regions import region_evidence, top_regions
from medig.preprocess import FundusPreprocess, find_anatomy
from medig.synthetic import generate
from medig.visualize import attribution_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    raw, _, _ = generate(args.n, size=args.size, seed=9100)
    x, fov = FundusPreprocess(size=256)(raw)
    model, _ = medig.load_model("demo")
    ig = medig.FundusIntegratedGradients(torch.nn.Sequential(model, torch.nn.Softmax(1)))
    maps = attribution_map(ig.explain(x, target=1, max_steps=32).attributions.detach())
    reps, best = 3, float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for i in range(0, args.n, 8):
            sl = slice(i, i + 8)
            regions = find_anatomy(x[sl], fov[sl]).regions()
            region_evidence(maps[sl], regions)
            top_regions(maps[sl], regions)
            outside_fov_share(maps[sl], fov[sl])
        best = min(best, (time.perf_counter() - start) / args.n)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for i in range(args.n):
            Image.fromarray(raw[i].permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "medig", "audit", str(folder), "--out",
                        str(Path(tmp) / "out"), "--sanity-sample", "0", "--quiet", "--threads",
                        str(args.threads), "--workers", "0"], check=True, capture_output=True)
        audit = (time.perf_counter() - start) / args.n
        rows = [json.loads(line) for line in (Path(tmp) / "out" / "results.jsonl").open()]
    print(json.dumps({"images": args.n, "size": args.size, "threads": args.threads,
                      "region_steps_s_per_image": round(best, 4),
                      "default_audit_s_per_image": round(audit, 3),
                      "share_of_audit": round(best / audit, 4), "rows": len(rows)}))


if __name__ == "__main__":
    main()
