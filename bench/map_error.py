# SPDX-License-Identifier: Apache-2.0
"""Map accuracy: medig's map error estimate against converged IG, and the cost at equal accuracy.

For each model and synthetic image, the reference is converged IG: Captum's Gauss-Legendre rule
with ``--ref-steps`` steps per baseline (checked against half as many), on the same model, inputs,
baselines and target (the predicted class's softmax probability). Then:

- **estimator validation**: ``explain()`` at the audit's settings (completeness 1% with a 0.001
  floor, ``max_steps`` 256) with ``map_tol`` 0.05 (the default), 0.1 and None (completeness alone),
  on the black baseline, the blur baseline and their average; per image the estimate
  (``map_error``) against the truth (relative L2 to the reference, over all pixels and channels),
  and the strongest-5% overlap (pixels of largest |channel-summed attribution|);
- **equal accuracy** (the audit's default: black + blur averaged, ``map_tol`` 0.05): medig's
  gradient evaluations per image (every evaluation on every baseline's path) against the cheapest
  Captum Gauss-Legendre grid (steps per baseline) whose maps are within 5% relative L2 and 0.95
  strongest-5% overlap on every image; time per image of both, interleaved.

Each image's record goes to ``--out`` (JSON lines); ``--plot`` draws estimate against truth.

Usage: ``python bench/map_error.py --size 96 --n 6 --out /tmp/map_error.jsonl --plot
bench/map_error.png [--results bench/RESULTS.md]``
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MODELS, build_model, header, images, machine, table, write_section

GRID = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
L2_GOAL, OVERLAP_GOAL, TOP = 0.05, 0.95, 0.05
CONFIGS = {"black": ("black",), "blur": ("blur",), "black+blur": ("black", "blur")}
MAP_TOLS = (0.05, 0.1, None)


def _rel_l2(a, ref):
    return ((a - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-30)).tolist()


def _overlap(a, ref):
    k = max(1, int(TOP * a[0, 0].numel()))
    out = []
    for u, v in zip(a.sum(1).abs().flatten(1), ref.sum(1).abs().flatten(1)):
        out.append(len(set(u.topk(k).indices.tolist()) & set(v.topk(k).indices.tolist())) / k)
    return out


def _captum(fn, x, bases, target, n):
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(fn)
    return [ig.attribute(x, baselines=b, target=target, n_steps=n, internal_batch_size=64)
            for b in bases]


def run_model(key: str, size: int, n: int, ref_steps: int, log) -> tuple[list[dict], dict]:
    import torch

    from medig import FundusIntegratedGradients
    from medig.baselines import make_baselines

    fn = build_model(key)
    for p in fn.parameters():
        p.requires_grad_(False)
    x = images(n, size, seed=4242)
    with torch.no_grad():
        target = fn(x).argmax(1)
    bases_all, names = make_baselines(["black", "blur"], x)
    bases = {nm: torch.as_tensor(b, dtype=x.dtype).expand_as(x) for nm, b in zip(names, bases_all)}
    t0 = time.perf_counter()
    refs = dict(zip(bases, _captum(fn, x, list(bases.values()), target, ref_steps)))
    half = dict(zip(bases, _captum(fn, x, list(bases.values()), target, ref_steps // 2)))
    ref_check = max(max(_rel_l2(half[b], refs[b])) for b in bases)
    log(f"{key}: reference GL {ref_steps} ({time.perf_counter() - t0:.0f} s); "
        f"GL {ref_steps // 2} differs by at most {ref_check:.2e}")
    ig = FundusIntegratedGradients(fn)
    records = []
    for cname, cb in CONFIGS.items():
        ref = torch.stack([refs[b] for b in cb]).mean(0)
        for mt in MAP_TOLS:
            t0 = time.perf_counter()
            e = ig.explain(x, target=target, baselines=list(cb), completeness_tol=0.01,
                           completeness_atol=1e-3, max_steps=256, map_tol=mt)
            sec = time.perf_counter() - t0
            truth, ov = _rel_l2(e.attributions, ref), _overlap(e.attributions, ref)
            for i in range(n):
                records.append({"model": key, "config": cname, "map_tol": mt, "image": i,
                                "estimate": float(e.map_error[i]), "truth": truth[i],
                                "overlap": ov[i], "evals": int(e.n_steps[i]),
                                "relative_error": float(e.relative_error[i]),
                                "flagged": bool(e.flagged[i]), "seconds": sec / n})
            log(f"  {cname} map_tol={mt}: evals {[int(v) for v in e.n_steps]}, truth max "
                f"{max(truth):.3f}, est max {float(e.map_error.max()):.3f}, overlap min "
                f"{min(ov):.2f} ({sec:.0f} s)")
    # equal accuracy on the audit's default (black + blur averaged)
    ref = torch.stack(list(refs.values())).mean(0)
    n_star, tried = None, []
    for steps in GRID:
        a = torch.stack(_captum(fn, x, list(bases.values()), target, steps)).mean(0)
        l2, ov = _rel_l2(a, ref), _overlap(a, ref)
        ok = all(v <= L2_GOAL for v in l2) and all(v >= OVERLAP_GOAL for v in ov)
        tried.append((steps, max(l2), min(ov)))
        log(f"  grid {steps}/baseline: max L2 {max(l2):.3f}, min overlap {min(ov):.2f}")
        if ok:
            n_star = steps
            break
    timing = {"medig": [], "captum": []}
    if n_star is not None:
        for _rep in range(2):  # interleaved
            t0 = time.perf_counter()
            ig.explain(x, target=target, baselines=["black", "blur"], completeness_tol=0.01,
                       completeness_atol=1e-3, max_steps=256, map_tol=0.05)
            timing["medig"].append((time.perf_counter() - t0) / n)
            t0 = time.perf_counter()
            _captum(fn, x, list(bases.values()), target, n_star)
            timing["captum"].append((time.perf_counter() - t0) / n)
    summary = {"model": key, "size": size, "n": n, "ref_check": ref_check, "n_star": n_star,
               "tried": tried, "timing": timing}
    return records, summary


def plot(records: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=120)
    markers = {"demo": "o", "resnet18": "s", "resnet18-trained": "^", "swin_t": "D"}
    colours = {"black": "tab:blue", "blur": "tab:orange", "black+blur": "tab:green"}
    for r in records:
        ax.scatter(max(r["estimate"], 1e-4), max(r["truth"], 1e-4),
                   marker=markers.get(r["model"], "x"), s=18, alpha=0.7,
                   color=colours[r["config"]], edgecolors="none")
    lim = (1e-3, 3.0)
    ax.plot(lim, lim, "k-", lw=0.8, label="truth = estimate")
    ax.plot(lim, [1.5 * v for v in lim], "k--", lw=0.8, label="truth = 1.5 x estimate")
    ax.set(xscale="log", yscale="log", xlim=lim, ylim=lim,
           xlabel="estimated relative L2 error of the map (map_error)",
           ylabel="true relative L2 error (vs Gauss-Legendre reference)")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=m, ls="", color="grey", label=k) for k, m in markers.items()]
    handles += [Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in colours.items()]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=7, loc="upper left")
    ax.set_title("medig map error estimate vs truth, synthetic fundus images", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def report(records: list[dict], summaries: list[dict], args, info) -> list[str]:
    import statistics

    cmd = "python bench/map_error.py " + " ".join(sys.argv[1:])
    lines = header("map accuracy", cmd, info)
    ok = [r for r in records if r["truth"] <= 1.5 * r["estimate"]]
    sizes = "; ".join(f"{s['model']} {s['size']} px, {s['n']} images" for s in summaries)
    lines += [f"Synthetic fundus images (small inputs, CPU): {sizes}; "
              f"reference Gauss-Legendre {args.ref_steps} steps per baseline; softmax probability "
              "of the predicted class; completeness 1% with a 0.001 floor, max_steps 256.", "",
              f"Estimator validation: truth <= 1.5 x estimate on **{len(ok)}/{len(records)} "
              f"({len(ok) / len(records):.1%})** images (all models, baselines and map_tol); "
              "plot: [map_error.png](map_error.png).", ""]
    rows = []
    for m in dict.fromkeys(r["model"] for r in records):
        for c in CONFIGS:
            for mt in MAP_TOLS:
                rs = [r for r in records if r["model"] == m and r["config"] == c
                      and r["map_tol"] == mt]
                if not rs:
                    continue
                ratio = [r["truth"] / r["estimate"] for r in rs if r["estimate"] > 0]
                rows.append((m, c, "none" if mt is None else mt,
                             f"{statistics.mean(r['evals'] for r in rs):.1f}",
                             f"{max(r['estimate'] for r in rs):.3f}",
                             f"{max(r['truth'] for r in rs):.3f}",
                             f"{max(ratio):.2f}" if ratio else "n/a",
                             f"{sum(r['truth'] <= 1.5 * r['estimate'] for r in rs)}/{len(rs)}",
                             f"{min(r['overlap'] for r in rs):.2f}",
                             f"{sum(r['flagged'] for r in rs)}"))
    lines += table(("model", "baselines", "map_tol", "evals/image", "max estimate", "max truth",
                    "max truth/estimate", "truth <= 1.5 est", "min top-5% overlap", "flagged"),
                   rows)
    lines += ["", "Equal accuracy (the audit's default, black + blur averaged, map_tol 0.05): "
              "medig's evaluations per image against the cheapest Captum Gauss-Legendre grid "
              f"(steps per baseline, x2 evaluations) with every map within {L2_GOAL:.0%} L2 and "
              f"{OVERLAP_GOAL} strongest-5% overlap; seconds per image, interleaved (median of 2):",
              ""]
    rows = []
    for s in summaries:
        rs = [r for r in records if r["model"] == s["model"] and r["config"] == "black+blur"
              and r["map_tol"] == 0.05]
        medig_evals = statistics.mean(r["evals"] for r in rs)
        cap = None if s["n_star"] is None else 2 * s["n_star"]
        t = s["timing"]
        rows.append((s["model"], s["size"], s["n"], f"{medig_evals:.1f}",
                     f"{max(r['truth'] for r in rs):.3f}", f"{min(r['overlap'] for r in rs):.2f}",
                     f"{s['n_star']} ({cap})" if cap else f"none <= {GRID[-1]}",
                     f"{cap / medig_evals:.2f}x" if cap else "n/a",
                     f"{statistics.median(t['medig']):.2f} / {statistics.median(t['captum']):.2f}"
                     if t["medig"] else "n/a",
                     f"{s['ref_check']:.1e}"))
    lines += table(("model", "px", "images", "medig evals/image", "medig max L2",
                    "medig min overlap", "Captum N* per baseline (evals)", "evals ratio",
                    "s/image medig / Captum N*", "reference check"), rows)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["demo", "resnet18", "resnet18-trained",
                                                    "swin_t"], choices=list(MODELS))
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--ref-steps", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="/tmp/map_error.jsonl")
    ap.add_argument("--plot", default=None)
    ap.add_argument("--results", default=None)
    ap.add_argument("--from-jsonl", nargs="+", default=None, metavar="FILE",
                    help="no measuring: plot and report the records of earlier runs' --out files")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    info = machine()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    records, summaries = [], []
    if args.from_jsonl:
        for name in args.from_jsonl:
            for line in Path(name).read_text().splitlines():
                item = json.loads(line)
                (summaries.append(item["summary"]) if "summary" in item else records.append(item))
        if args.plot:
            plot(records, args.plot)
        write_section(args.results, "map accuracy", report(records, summaries, args, info))
        return
    out = Path(args.out)
    out.write_text("")
    for key in args.models:
        rec, summ = run_model(key, args.size, args.n, args.ref_steps, log)
        records += rec
        summaries.append(summ)
        with out.open("a") as f:
            for r in rec:
                f.write(json.dumps(r) + "\n")
            f.write(json.dumps({"summary": summ}) + "\n")
    if args.plot:
        plot(records, args.plot)
    write_section(args.results, "map accuracy", report(records, summaries, args, info))


if __name__ == "__main__":
    main()
