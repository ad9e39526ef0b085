# SPDX-License-Identifier: Apache-2.0
"""Break-even of ``medig audit --compile``: compile seconds against seconds saved per image.

The audit's explanation (demo model at 256 px, softmax probability, black + blur baselines, the
default completeness rule) runs on the same batches of synthetic photographs with the eager model
and with :class:`medig.attr.compiled.PaddedCompiledForward` (``torch.compile``, inductor, one padded
pass shape). Compile time is the first compiled explanation's extra time over the eager one (the
compile of forward and backward at the padded shape); the per-image times are then measured
interleaved over repetitions. Break-even = compile seconds / (eager - compiled seconds per image).
A fresh process per run (``--worker``) so the compile is really paid (no in-process cache; the
on-disk inductor cache is pointed at a fresh folder).

Usage: ``python bench/compile.py [--quick] [--n 16] [--reps 3] [--threads 1] [--results FILE]``
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    build_model,
    header,
    images,
    machine,
    parse_or_work,
    run_worker,
    spread,
    table,
    write_section,
)


def worker(spec: dict) -> dict:
    import torch

    from medig import FundusIntegratedGradients
    from medig.attr.compiled import compiled_forward
    from medig.attr.completeness import default_atol

    torch.set_num_threads(spec["threads"])
    fn = build_model(spec["model"], "probability")
    model = fn.model.to(memory_format=torch.channels_last)  # as the audit does
    fn.model = model
    size = spec["size"]
    x = images(spec["n"], size, seed=3)
    batches = [x[i:i + 8] for i in range(0, x.shape[0], 8)]
    eager_ig = FundusIntegratedGradients(fn, baselines=["black", "blur"])
    wrapped = compiled_forward(fn, size, torch.device("cpu"))
    comp_ig = FundusIntegratedGradients(wrapped, baselines=["black", "blur"])
    kw = dict(completeness_tol=0.01, completeness_atol=default_atol("probability"))

    def run(ig, batch):
        t0 = time.perf_counter()
        e = ig.explain(batch, **kw)
        return time.perf_counter() - t0, e

    # first batch: eager (warm) and compiled (pays the compile)
    run(eager_ig, batches[0])
    t_eager_first, e_ref = run(eager_ig, batches[0])
    t_comp_first, e_comp = run(comp_ig, batches[0])
    if wrapped.failed:
        return {"error": f"compile failed: {wrapped.failed}"}
    compile_s = t_comp_first - t_eager_first
    same = float((e_comp.attributions - e_ref.attributions).abs().max())
    eager, comp, steps = [], [], []
    for _rep in range(spec["reps"]):
        for batch in batches:
            te, e = run(eager_ig, batch)
            tc, _ = run(comp_ig, batch)
            eager.append(te / batch.shape[0])
            comp.append(tc / batch.shape[0])
            steps += e.n_steps.tolist()
    return {"compile_s": compile_s, "eager": eager, "compiled": comp, "points": wrapped.pass_points,
            "max_abs_diff": same, "steps": statistics.mean(steps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 images, 2 repetitions")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = parse_or_work(ap, worker)
    if args is None:
        return
    n = args.n or (8 if args.quick else 16)
    reps = args.reps or (2 if args.quick else 3)
    info = machine()
    cache = tempfile.mkdtemp(prefix="medig-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # inherited by the worker: a cold compile
    spec = {"model": "demo", "size": 256, "n": n, "reps": reps, "threads": args.threads}
    t0 = time.perf_counter()
    r = run_worker([__file__, "--worker", json.dumps(spec)])
    print(f"worker: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    cmd = "python bench/compile.py " + " ".join(sys.argv[1:])
    lines = header("compile", cmd, info)
    if "error" in r:
        lines += [f"Failed: {r['error'][:300]}"]
        write_section(args.results, "compile", lines)
        return
    ratio = [e / c for e, c in zip(r["eager"], r["compiled"])]
    saved = statistics.median(r["eager"]) - statistics.median(r["compiled"])
    breakeven = r["compile_s"] / saved if saved > 0 else float("inf")
    lines += [(f"Demo model at 256 px, probability, black + blur, default rule; {n} synthetic images in "
               f"batches of 8, {reps} interleaved repetitions; torch threads {args.threads}; compiled "
               f"pass shape {r['points']} points; {r['steps']:.1f} evaluations per image; largest "
               f"|attribution| difference compiled vs eager {r['max_abs_diff']:.1e}."), ""]
    lines += table(("compile s (cold)", "eager s/image", "compiled s/image",
                    "speed-up per image", "break-even images"),
                   [(f"{r['compile_s']:.1f}", spread(r["eager"]), spread(r["compiled"]),
                     spread(ratio), f"{breakeven:.0f}" if saved > 0 else "never")])
    write_section(args.results, "compile", lines)


if __name__ == "__main__":
    main()
