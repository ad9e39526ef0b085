# SPDX-License-Identifier: Apache-2.0
"""Throughput of ``medig.preprocess.FundusPreprocess`` vs a per-image PIL + torchvision loop.

Both sides do the same job on the same JPEG files (synthetic 1500 x 1500 fundus-like disks):
decode (optionally), find the FOV (threshold a downscaled copy, circle/box from it), crop a square
box around it with zero padding, antialiased bilinear resize to 512, to a float tensor in [0, 1],
plus the FOV mask at output size. The PIL loop is the usual Kaggle-kernel pipeline (thresholded
bounding box, ``Image.crop`` + ``Image.resize``, ``to_tensor``); it is single-threaded by nature, so
torch is measured both with all cores and with one thread. Runs are interleaved so that the ratio
is measured side by side under the same machine load.

Decoders: the PIL loop decodes with PIL (``Image.open().convert("RGB")``); "torch ... decode incl."
decodes with ``torchvision.io.decode_jpeg`` (CPU, one image at a time); "... (PIL decode)" decodes
with PIL too and converts with ``TF.pil_to_tensor`` (one copy, as users write it), so that variant
compares the preprocessing with the same decoder on both sides. Both decoders are libjpeg-turbo.

Usage: ``python bench/preprocess.py [--quick] [--n 64] [--size 512] [--reps R]``
"""
from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from medig.preprocess import FundusPreprocess
from medig.synthetic.disk import synthetic_disk


def make_jpegs(n: int, side: int, distinct: int) -> list[bytes]:
    """``n`` JPEG files; ``distinct`` different disks (generation is slow), reused cyclically."""
    datas = []
    g = torch.Generator().manual_seed(0)
    for k in range(distinct):
        r = side * (0.42 + 0.12 * float(torch.rand(1, generator=g)))
        cx = side / 2 + side * 0.04 * (float(torch.rand(1, generator=g)) - 0.5)
        cy = side / 2 + side * 0.04 * (float(torch.rand(1, generator=g)) - 0.5)
        img = synthetic_disk(side, side, cx, cy, r, lesions=6, text=k % 2 == 0, seed=k)
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=92)
        datas.append(buf.getvalue())
    return [datas[i % distinct] for i in range(n)]


def pil_pipeline(im: Image.Image, size: int, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image reference: threshold a 256-px copy, square box around it, crop, resize, tensor."""
    w, h = im.size
    k = max(1, round(max(w, h) / 256))
    small = np.asarray(im.reduce(k)).max(axis=2).astype(np.float32)
    bg = np.percentile(small, 2)
    fg = np.median(small[small > bg + 0.1 * (np.percentile(small, 99) - bg)])
    fov = small > bg + 0.25 * (fg - bg)
    rows, cols = np.nonzero(fov.any(1))[0], np.nonzero(fov.any(0))[0]
    x0, x1 = cols[0] * k, (cols[-1] + 1) * k
    y0, y1 = rows[0] * k, (rows[-1] + 1) * k
    r = (x1 - x0) / 2  # width: the disk is cut top/bottom on many cameras
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = round(2 * r * (1 + margin))
    box = (round(cx - side / 2), round(cy - side / 2))
    box = (*box, box[0] + side, box[1] + side)
    out = TF.to_dtype(TF.pil_to_tensor(im.crop(box).resize((size, size), Image.BILINEAR)),
                      torch.float32, scale=True)
    mask_img = Image.fromarray(fov).crop(tuple(round(b / k) for b in box))
    mask = TF.pil_to_tensor(mask_img.resize((size, size), Image.NEAREST)).bool()
    return out, mask


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repetitions (< 5 min on 2 cores)")
    ap.add_argument("--n", type=int, default=64, help="images per batch (default 64)")
    ap.add_argument("--side", type=int, default=1500, help="JPEG side (default 1500)")
    ap.add_argument("--size", type=int, default=512, help="output size (default 512)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3 quick, 7 full)")
    args = ap.parse_args()
    reps = args.reps or (3 if args.quick else 7)
    cores = torch.get_num_threads()
    datas = make_jpegs(args.n, args.side, distinct=4 if args.quick else 8)
    pre = FundusPreprocess(size=args.size)
    margin = pre.margin

    def pil_decode() -> list[Image.Image]:
        ims = [Image.open(io.BytesIO(d)).convert("RGB") for d in datas]
        for im in ims:
            im.load()
        return ims

    decoded_pil = pil_decode()
    raw = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    decoded_cpu = [torchvision.io.decode_jpeg(r) for r in raw]

    def nosync() -> None:
        return None

    runs: dict[str, tuple[Callable[[], object], Callable[[], None], int]] = {
        "PIL loop, decode incl.": (lambda: [pil_pipeline(im, args.size, margin)
                                            for im in pil_decode()], nosync, 1),
        "PIL loop, decode excl.": (lambda: [pil_pipeline(im, args.size, margin)
                                            for im in decoded_pil], nosync, 1),
    }
    for threads in sorted({1, cores}):
        runs[f"torch CPU {threads}t, decode incl."] = (
            lambda: pre([torchvision.io.decode_jpeg(r) for r in raw]), nosync, threads)
        runs[f"torch CPU {threads}t, decode incl. (PIL decode)"] = (
            lambda: pre([TF.pil_to_tensor(im) for im in pil_decode()]), nosync, threads)
        runs[f"torch CPU {threads}t, decode excl."] = (lambda: pre(decoded_cpu), nosync, threads)
    if torch.cuda.is_available():
        decoded_gpu = [t.cuda() for t in decoded_cpu]
        sync = torch.cuda.synchronize
        runs["torch CUDA, decode incl. (nvjpeg)"] = (
            lambda: pre(torchvision.io.decode_jpeg(raw, device="cuda")), sync, cores)
        runs["torch CUDA, decode excl."] = (lambda: pre(decoded_gpu), sync, cores)

    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn, sync, threads in runs.values():  # warm-up (allocators, kernels, page cache)
        torch.set_num_threads(threads)
        fn()
    for _ in range(reps):  # interleaved: every method sees the same machine load
        for name, (fn, sync, threads) in runs.items():
            torch.set_num_threads(threads)
            times[name].append(timed(fn, sync))
    torch.set_num_threads(cores)

    def ips(name: str) -> float:
        return args.n / statistics.median(times[name])

    print(f"{args.n} JPEGs {args.side}x{args.side} -> {args.size}x{args.size}, {reps} reps, "
          f"torch {torch.__version__}, {cores} CPU threads available, "
          f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}")
    print(f"{'method':46s} {'img/s median':>12s} {'min':>7s} {'max':>7s} {'vs PIL':>7s}")
    for name in runs:
        ref = "PIL loop, decode incl." if "incl." in name else "PIL loop, decode excl."
        lo, hi = args.n / max(times[name]), args.n / min(times[name])
        print(f"{name:46s} {ips(name):12.1f} {lo:7.1f} {hi:7.1f} {ips(name) / ips(ref):6.2f}x")


if __name__ == "__main__":
    main()
