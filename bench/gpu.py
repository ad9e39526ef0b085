# SPDX-License-Identifier: Apache-2.0
"""The GPU benchmark: ResNet-50 at 512 px, images/s at the completeness rule, medig vs Captum.

Runs :mod:`bench.ig_vs_captum` on ``cuda`` with the rows the GPU question needs, interleaved in one
run on the same GPU: Captum at the smallest Gauss-Legendre step count that meets the rule on every
image (N*, searched first) and at its default 50 steps; medig in float32, with float16 autocast path
passes (completeness checked in float32, misses redone in float32), and with float16 plus the
compiled, padded forward (``torch.compile``; its compile time is reported apart). Batches of 32 and
64 images. The goal stated in issue 16: >= 100 images/s on one H100-class GPU at the rule on every
image.

Usage: ``python bench/gpu.py [--quick] [--results bench/RESULTS.md]`` (needs a CUDA device; on a
machine without one it says so and exits 0, measuring nothing).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here; nothing measured (see bench/RESULTS.md, 'gpu')")
        return 0
    quick = "--quick" in sys.argv
    rest = [a for a in sys.argv[1:] if a != "--quick"]
    cmd = [sys.executable, str(Path(__file__).with_name("ig_vs_captum.py")), "--device", "cuda",
           "--models", "resnet50", "--n", "16" if quick else "128", "--reps", "2" if quick else "3",
           "--batches", "32" if quick else "32 64", "--medig-variants", "fp16", "fp16-compile",
           *rest]
    cmd = [c for part in cmd for c in part.split(" ")]
    print(" ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
