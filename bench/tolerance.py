# SPDX-License-Identifier: Apache-2.0
"""How large may the completeness rule's absolute tolerance be? Evaluations saved against overlay error.

For each candidate ``atol`` the default audit explanation (demo model, softmax probability, black and
blur baselines, ``completeness_tol=0.01``, rule ``|delta| <= max(atol, 1% of |F(x) - F(x')|)``) is
compared with a reference attribution of the same images: the uniform trapezoid rule with
``--ref-steps`` segments per baseline (no adaptivity, so no reliance on cancellation; its own
relative completeness error is printed). The images are the bundled examples (``examples/fundus``,
every readable file and frame, preprocessed as the audit does) and ``--n`` synthetic photographs.

What the overlay shows is the channel-summed attribution map, clipped at the 99.5th percentile of
|attribution|. For each image the error is the 99th percentile over pixels of |map - reference map|,
as a share of the colour scale: the cohort scale (99.5th percentile pooled over all images, the
audit's default) and the image's own scale (``--overlay-scale image``). One colour level of the
overlay is 1/255 = 0.39% of the scale.

Usage: ``python bench/tolerance.py [--quick] [--atol 1e-6 1e-4 3e-4 1e-3 3e-3 1e-2] [--results FILE]``
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, build_model, header, images, machine, table, write_section

BASELINES = ["black", "blur"]
TOL = 0.01


def example_images(size: int = 256):
    """The bundled examples as the audit's model sees them (every readable file and frame)."""
    import torch

    from medig.audit.inputs import collect_inputs
    from medig.io import ImageReadError, read_frames
    from medig.preprocess import FundusPreprocess

    pre = FundusPreprocess(size=size)
    frames, names = [], []
    for item in collect_inputs([REPO / "examples" / "fundus"]):
        try:
            read = read_frames(item.path)
        except ImageReadError:
            continue
        for k, im in enumerate(read):
            frames.append(im.pixels)
            names.append(item.rel if len(read) == 1 else f"{item.rel}#{k}")
    with torch.no_grad():
        x, _ = pre(frames)
    return x, names


def _quantile(t, q):
    import numpy as np

    return float(np.quantile(t.detach().double().cpu().numpy(), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 synthetic images, 128 reference steps")
    ap.add_argument("--n", type=int, default=None, help="synthetic images (default 16; quick 4)")
    ap.add_argument("--atol", type=float, nargs="+", default=[1e-6, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    ap.add_argument("--ref-steps", type=int, default=None, help="reference segments (256; quick 128)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8, help="images per explain call (the audit's 8)")
    ap.add_argument("--results", help="also replace this benchmark's section in this file")
    args = ap.parse_args()

    import torch

    from medig import FundusIntegratedGradients
    from medig.visualize import attribution_map

    torch.set_num_threads(args.threads)
    n_syn = args.n if args.n is not None else (4 if args.quick else 16)
    ref_steps = args.ref_steps or (128 if args.quick else 256)
    log = lambda s: print(s, file=sys.stderr, flush=True)
    info = machine()
    fn = build_model("demo", "probability")
    ex, _names = example_images()
    x = torch.cat([ex, images(n_syn, 256, seed=7)]) if n_syn else ex
    sets = {"examples": slice(0, ex.shape[0]), "synthetic": slice(ex.shape[0], x.shape[0])}
    ig = FundusIntegratedGradients(fn, baselines=BASELINES)

    def run(**kw):
        parts = [ig.explain(x[s:s + args.batch], **kw) for s in range(0, x.shape[0], args.batch)]
        cat = lambda name: torch.cat([getattr(p, name) for p in parts])
        return {k: cat(k) for k in ("attributions", "n_steps", "relative_error", "delta", "flagged",
                                    "score", "baseline_score")}

    t0 = time.perf_counter()
    ref = run(completeness_tol=None, n_steps=ref_steps)
    log(f"reference: uniform trapezoid, {ref_steps} segments, {time.perf_counter() - t0:.0f} s; "
        f"relative error median {ref['relative_error'].median():.2e}, "
        f"max {ref['relative_error'].max():.2e}")
    ref_map = attribution_map(ref["attributions"])[:, 0]
    cohort_clip = _quantile(ref_map.abs(), 0.995)
    image_clip = torch.tensor([_quantile(m.abs(), 0.995) for m in ref_map])

    rows = []
    for atol in args.atol:
        t0 = time.perf_counter()
        out = run(completeness_tol=TOL, completeness_atol=atol)
        seconds = time.perf_counter() - t0
        err = (attribution_map(out["attributions"])[:, 0] - ref_map).abs()
        p99 = torch.tensor([_quantile(e, 0.99) for e in err])
        cohort = p99 / cohort_clip
        own = p99 / image_clip
        for name, sl in sets.items():
            if sl.stop == sl.start:
                continue
            rows.append((
                f"{atol:g}", name, sl.stop - sl.start,
                f"{out['n_steps'][sl].double().mean():.1f}", int(out["n_steps"][sl].max()),
                f"{int(out['flagged'][sl].sum())}",
                f"{out['relative_error'][sl].max():.4f}",
                f"{100 * cohort[sl].median():.2f} / {100 * cohort[sl].max():.2f}",
                f"{100 * own[sl].median():.2f} / {100 * own[sl].max():.2f}",
                f"{seconds:.0f}"))
        log(f"atol {atol:g}: {out['n_steps'].double().mean():.1f} evaluations per image, "
            f"overlay error (cohort scale) max {100 * cohort.max():.2f}%, {seconds:.0f} s")

    cmd = "python bench/tolerance.py " + " ".join(sys.argv[1:])
    lines = header("tolerance", cmd, info)
    lines += [(f"Demo model (256 px), softmax probability of the predicted class, baselines "
               f"{' + '.join(BASELINES)}, completeness_tol {TOL:g}; {ex.shape[0]} example frames "
               f"(examples/fundus) and {n_syn} synthetic photographs (seed 7). Reference: uniform "
               f"trapezoid with {ref_steps} segments per baseline (relative error median "
               f"{ref['relative_error'].median():.1e}, max {ref['relative_error'].max():.1e}). "
               "Overlay error: 99th percentile over pixels of |map - reference map| as a % of the "
               "colour scale (one colour level = 0.39%), median / max over images."), ""]
    lines += table(("atol", "images", "n", "evals/image", "max evals", "flagged",
                    "max relative error", "overlay error, cohort scale %",
                    "overlay error, own scale %", "s"), rows)
    write_section(args.results, "tolerance", lines)


if __name__ == "__main__":
    main()
