# SPDX-License-Identifier: Apache-2.0
"""Does channels_last help the IG path integral? Measured per architecture, interleaved.

One gradient evaluation (forward + backward to the input, explaining a summed probability) of a
chunk of path points, in three layouts:

- ``cl/cl``: model weights and path points channels_last (what the audit did for every model);
- ``nchw/cl``: weights contiguous, points channels_last (the adaptive integrator always makes
  its points channels_last, so this is what a model left contiguous by the audit gets);
- ``nchw/nchw``: both contiguous (reference).

Each repeat runs the three back to back, in a rotating order, and the speed-up is computed within
the repeat; the median and range over repeats are reported, which hold on a shared machine
(load from other processes changes both sides of a ratio alike).

    python bench/channels_last.py --quick                  # 64 px, a few repeats (minutes)
    OMP_NUM_THREADS=1 python bench/channels_last.py --size 224 --threads 1 --chunk 4
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torchvision

LAYOUTS = ("cl/cl", "nchw/cl", "nchw/nchw")


def _timm(name: str, **kwargs: object) -> torch.nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=5, **kwargs)


def _models(size: int, names: list[str]) -> dict[str, torch.nn.Module]:
    tv = torchvision.models
    build = {
        "resnet18": lambda: tv.resnet18(num_classes=5),
        "convnext_tiny": lambda: tv.convnext_tiny(num_classes=5),
        "swin_t": lambda: tv.swin_t(num_classes=5),
        "vit_b_16": lambda: tv.vit_b_16(num_classes=5, image_size=size),
        "timm_efficientnet_b0": lambda: _timm("efficientnet_b0"),
        "timm_vit_small": lambda: _timm("vit_small_patch16_224", img_size=size),
    }
    return {name: build[name]() for name in names}


def _step(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    x = x.detach().requires_grad_(True)
    out = torch.softmax(model(x), dim=1)[:, 2:].sum()
    torch.autograd.grad(out, x)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 px, 3 repeats")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=8, help="path points per pass")
    parser.add_argument("--repeats", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads (default: torch's); 1 avoids OpenMP contention on a "
                             "shared machine")
    parser.add_argument("--models", nargs="+",
                        default=["resnet18", "convnext_tiny", "swin_t", "vit_b_16"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = args.size or (64 if args.quick else 224)
    repeats = args.repeats or (3 if args.quick else 7)
    torch.manual_seed(0)
    print(f"# {size} px, {args.chunk} points per pass, {repeats} interleaved repeats, "
          f"{torch.get_num_threads()} threads")
    print("speed-up over cl/cl (weights/points), median [min-max] of per-repeat ratios; "
          ">1: faster than channels_last everywhere")
    print(f"{'model':22s} {'nchw/cl':>22s} {'nchw/nchw':>22s} {'cl/cl ms':>10s}")
    for name, net in _models(size, args.models).items():
        for p in net.parameters():
            p.requires_grad_(False)
        net = net.eval()
        x = torch.rand(args.chunk, 3, size, size)
        cl_model = copy.deepcopy(net).to(memory_format=torch.channels_last)
        runs = {"cl/cl": (cl_model, x.contiguous(memory_format=torch.channels_last)),
                "nchw/cl": (net, x.contiguous(memory_format=torch.channels_last)),
                "nchw/nchw": (net, x.contiguous())}
        for model, inp in runs.values():  # warm-up
            _step(model, inp)
        ratios: dict[str, list[float]] = {k: [] for k in LAYOUTS[1:]}
        base_ms = []
        for r in range(repeats):
            order = LAYOUTS[r % 3:] + LAYOUTS[:r % 3]
            t = {layout: _step(*runs[layout]) for layout in order}
            base_ms.append(1000 * t["cl/cl"])
            for layout in LAYOUTS[1:]:
                ratios[layout].append(t["cl/cl"] / t[layout])

        def cell(v: list[float]) -> str:
            return f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"

        print(f"{name:22s} {cell(ratios['nchw/cl']):>22s} {cell(ratios['nchw/nchw']):>22s} "
              f"{statistics.median(base_ms):10.0f}", flush=True)


if __name__ == "__main__":
    main()
