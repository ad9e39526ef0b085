# SPDX-License-Identifier: Apache-2.0
"""How long building an architecture for a checkpoint takes, with and without random init.

``load_model`` builds library architectures without their random initialisation when a weights
file will overwrite every parameter (``medig.models.architectures.skipped_init``). This times the
build both ways, interleaved, and a whole ``load_model`` of a Lightning-style checkpoint.

    python bench/loading.py --quick
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from medig.models import load_model
from medig.models.architectures import build_architecture


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    parser.add_argument("--models", nargs="+",
                        default=["torchvision:resnet18", "torchvision:swin_t",
                                 "torchvision:convnext_tiny"])
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    print(f"# {repeats} interleaved repeats, {torch.get_num_threads()} threads; median [min-max]")
    print(f"{'model':28s} {'build, init ms':>15s} {'build, no init ms':>18s} {'speed-up':>18s} "
          f"{'load_model ms':>14s}")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models:
            model = build_architecture(spec, 5)
            ckpt = Path(tmp) / "w.ckpt"
            torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                        "hyper_parameters": {"class_names": list("abcde")}}, ckpt)
            init, skip, ratio, load = [], [], [], []
            for _ in range(repeats):
                a = _time(lambda spec=spec: build_architecture(spec, 5))
                b = _time(lambda spec=spec: build_architecture(spec, 5, initialise=False))
                init.append(a)
                skip.append(b)
                ratio.append(a / b)
                load.append(_time(lambda spec=spec, ckpt=ckpt: load_model(spec, weights=ckpt)))
            med = statistics.median
            print(f"{spec:28s} {1000 * med(init):15.0f} {1000 * med(skip):18.0f} "
                  f"{med(ratio):7.1f} [{min(ratio):.1f}-{max(ratio):.1f}] "
                  f"{1000 * med(load):14.0f}", flush=True)


if __name__ == "__main__":
    main()
