# SPDX-License-Identifier: Apache-2.0
"""Does channels_last help the IG path integral? Measured per architecture, interleaved.

For each model, time one gradient evaluation (forward + backward to the input) of a chunk of
path points in four layouts: model weights contiguous or channels_last, path points contiguous
or channels_last (the adaptive integrator makes its points channels_last). Layouts run
interleaved and repeated; the ratios use the fastest repeat of each layout (contention from other
processes only ever adds time) and hold on a shared machine.

    python bench/channels_last.py --quick      # 64 px, a few repeats (minutes on 2 cores)
    python bench/channels_last.py --size 224   # the size the transformers were designed for
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
import torchvision


def _models(size: int, names: list[str]) -> dict[str, torch.nn.Module]:
    tv = torchvision.models
    build = {
        "resnet18": lambda: tv.resnet18(num_classes=5),
        "convnext_tiny": lambda: tv.convnext_tiny(num_classes=5),
        "swin_t": lambda: tv.swin_t(num_classes=5),
        "vit_b_16": lambda: tv.vit_b_16(num_classes=5, image_size=size),
    }
    return {name: build[name]() for name in names}


def _step(model: torch.nn.Module, x: torch.Tensor) -> None:
    x = x.detach().requires_grad_(True)
    out = torch.softmax(model(x), dim=1)[:, 2:].sum()
    torch.autograd.grad(out, x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 px, 3 repeats")
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=16, help="path points per pass")
    parser.add_argument("--repeats", type=int, default=0)
    parser.add_argument("--models", nargs="+",
                        default=["resnet18", "convnext_tiny", "swin_t", "vit_b_16"])
    args = parser.parse_args()
    size = args.size or (64 if args.quick else 224)
    repeats = args.repeats or (3 if args.quick else 5)
    torch.manual_seed(0)
    print(f"# {size} px, {args.chunk} points per pass, fastest of {repeats} interleaved repeats, "
          f"{torch.get_num_threads()} threads")
    print("speed-up over contiguous weights and points (>1: channels_last faster)")
    print("model           weights_cl/points_cl  weights_cl/points_nchw  nchw/points_cl  "
          "ms (nchw/nchw)")
    for name, net in _models(size, args.models).items():
        for p in net.parameters():
            p.requires_grad_(False)
        net = net.eval()
        x = torch.rand(args.chunk, 3, size, size)
        layouts = {}
        for weights_cl in (False, True):
            model = (net.to(memory_format=torch.channels_last) if weights_cl
                     else net.to(memory_format=torch.contiguous_format))
            layouts[weights_cl] = copy.deepcopy(model)
        inputs = {False: x.contiguous(), True: x.contiguous(memory_format=torch.channels_last)}
        combos = [(w, p) for w in (False, True) for p in (False, True)]
        times: dict[tuple[bool, bool], list[float]] = {c: [] for c in combos}
        for combo in combos:  # warm-up
            _step(layouts[combo[0]], inputs[combo[1]])
        for _ in range(repeats):
            for combo in combos:
                t0 = time.perf_counter()
                _step(layouts[combo[0]], inputs[combo[1]])
                times[combo].append(time.perf_counter() - t0)
        med = {c: min(v) for c, v in times.items()}
        base = med[(False, False)]
        print(f"{name:15s} {base / med[(True, True)]:20.2f}x {base / med[(True, False)]:22.2f}x "
              f"{base / med[(False, True)]:14.2f}x  {1000 * base:10.1f}")


if __name__ == "__main__":
    main()
