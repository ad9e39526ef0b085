# SPDX-License-Identifier: Apache-2.0
"""Largest batch x steps Captum runs before out-of-memory vs medig's automatic chunking, same cap.

CPU: every configuration runs in a fresh process that imports torch, builds the model, warms up
with one small forward pass, reads its own virtual memory size (VmSize: torch and its libraries
reserve gigabytes of address space they never touch) and then caps its address space with
``resource.setrlimit(RLIMIT_AS, VmSize + budget)``. So every process gets the same ``--budget-gb``
on top of its own calibrated baseline.

- Captum, the user's default: ``IntegratedGradients(model).attribute(x, baselines=0, target=pred,
  n_steps=50)`` (``internal_batch_size=None``: all batch x 50 points in one pass), parameters
  requiring grad, at increasing batch sizes until it fails; then, at batch 1, increasing
  ``n_steps`` to find how many path points one Captum pass fits.
- medig: ``FundusIntegratedGradients(model).explain(x, n_steps=50, completeness_tol=None,
  internal_batch_size="auto")`` with ``method="adaptive"`` (the default; without a tolerance one
  uniform pass of 51 points per image) and ``method="gausslegendre"`` (Captum's 50 nodes run by
  medig), chunked automatically (on CPU a fixed 64 MiB of path points per pass, halved on
  out-of-memory by ``medig.attr.chunking.run_chunked``). The errors that the handler saw are
  recorded with their exact text, and whether ``is_out_of_memory`` recognised them.

Usage: ``python bench/memory.py [--quick] [--model resnet50] [--budget-gb 4] [--results FILE]``
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    MODELS,
    build_model,
    header,
    images,
    machine,
    parse_or_work,
    run_worker,
    table,
    write_section,
)


def _vmsize() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


def worker(spec: dict) -> dict:
    import torch

    from medig.attr import FundusIntegratedGradients, chunking

    fn = build_model(spec["model"])
    size = spec["size"]
    x = images(1, size).expand(spec["batch"], -1, -1, -1).contiguous()
    with torch.no_grad():
        target = fn(x[:1]).argmax(dim=1).expand(spec["batch"]).clone()
    base_vm = _vmsize()
    limit = base_vm + int(spec["budget_gb"] * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    seen: list[dict] = []
    original = chunking.is_out_of_memory

    def spy(error: BaseException) -> bool:
        ok = original(error)
        seen.append({"type": type(error).__name__, "message": str(error)[:300], "caught": ok})
        return ok

    chunking.is_out_of_memory = spy
    t0 = time.perf_counter()
    try:
        if spec["config"] == "captum":
            from captum.attr import IntegratedGradients

            IntegratedGradients(fn).attribute(x, baselines=0, target=target,
                                              n_steps=spec["n_steps"])
            extra = {}
        else:
            # medig-gl: Captum's Gauss-Legendre nodes through medig's chunking (_captum_doubling);
            # medig-adaptive: the default method without tolerance = one uniform pass of
            # n_steps segments (n_steps + 1 points) through adaptive_path_integral's chunking.
            method = "gausslegendre" if spec["config"] == "medig-gl" else "adaptive"
            e = FundusIntegratedGradients(fn).explain(
                x, target=target, method=method, n_steps=spec["n_steps"],
                completeness_tol=None, internal_batch_size="auto")
            extra = {"rel_max": float(e.relative_error.max())}
        status = "ok"
        message = ""
    except BaseException as error:  # noqa: BLE001 - we report exactly what surfaced
        status = "failed"
        message = f"{type(error).__name__}: {str(error)[:300]}"
        extra = {}
    return {"status": status, "error": message, "seconds": time.perf_counter() - t0,
            "base_vm_gb": base_vm / 2**30, "limit_gb": limit / 2**30, "oom_seen": seen,
            "points": spec["batch"] * spec["n_steps"], **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="medig at batch 1 only")
    ap.add_argument("--model", default=None, choices=list(MODELS),
                    help="default resnet50 (--quick: resnet18, 4x cheaper per point)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--budget-gb", type=float, default=None,
                    help="address space allowed on top of the warmed-up process's VmSize")
    args = parse_or_work(ap, worker)
    if args is None:
        return
    args.model = args.model or ("resnet18" if args.quick else "resnet50")
    args.budget_gb = args.budget_gb or (2.0 if args.quick else 4.0)
    size = args.size
    info = machine()
    log = lambda s: print(s, file=sys.stderr, flush=True)
    rows = []

    def run(config: str, batch: int, n_steps: int) -> dict:
        spec = {"model": args.model, "size": size, "budget_gb": args.budget_gb, "config": config,
                "batch": batch, "n_steps": n_steps}
        r = run_worker([__file__, "--worker", json.dumps(spec)])
        if "status" not in r:
            r = {"status": "crashed", "error": r["error"], "seconds": float("nan"),
                 "oom_seen": [], "points": batch * n_steps, "limit_gb": float("nan"),
                 "base_vm_gb": float("nan")}
        log(f"{config} batch {batch} n_steps {n_steps}: {r['status']} {r['error'][:200]} "
            f"({r['seconds']:.1f} s, limit {r['limit_gb']:.2f} GiB); handler saw "
            f"{[(s['type'], s['message'][:120], s['caught']) for s in r['oom_seen']]}")
        rows.append((config, batch, n_steps, r["points"], r["status"],
                     f"{r['seconds']:.1f}", f"{r['base_vm_gb']:.2f} + {args.budget_gb:g}",
                     (r["error"][:160] or "-").replace("|", "/"),
                     "; ".join(f"{s['type']}: {s['message'][:90]} -> "
                               f"{'recognised as OOM' if s['caught'] else 'NOT recognised as OOM'}"
                               for s in r["oom_seen"]).replace("|", "/") or "-"))
        return r

    # Captum at its defaults, increasing batch until it fails
    captum_max_batch = 0
    for b in (1, 2, 4, 8, 16):
        if run("captum", b, 50)["status"] != "ok":
            break
        captum_max_batch = b
    # Captum at batch 1: how many path points fit in one pass
    captum_max_points = 0
    for s in (1, 2, 4, 8, 16, 32):
        if run("captum", 1, s)["status"] != "ok":
            break
        captum_max_points = s
    # medig at the batches where Captum failed
    medig_batches = [max(1, captum_max_batch * 2)]
    if not args.quick:
        medig_batches.append(medig_batches[0] * 4)
    medig_ok = []
    for b in medig_batches:
        for config in ("medig-adaptive", "medig-gl"):
            r = run(config, b, 50)
            if r["status"] == "ok":
                medig_ok.append(f"{config} at batch {b}")

    cmd = "python bench/memory.py " + " ".join(sys.argv[1:])
    lines = header("memory", cmd, info)
    lines += [(f"Model {args.model} at {size} px ({MODELS[args.model][0]}), "
              f"softmax probability of the predicted class, CPU, RLIMIT_AS = warmed-up VmSize + "
              f"{args.budget_gb:g} GiB per process."), ""]
    lines += table(("config", "batch", "n_steps", "points", "result", "s", "cap GiB (VmSize + budget)",
                    "error surfaced", "errors seen by run_chunked"), rows)
    lines += ["", (f"Captum (n_steps=50, internal_batch_size=None): largest batch that ran = "
              f"{captum_max_batch}; largest single pass at batch 1 = {captum_max_points} points. "
              f"medig (internal_batch_size='auto'; medig-adaptive: 51 uniform points per image, "
              f"medig-gl: Captum's 50 Gauss-Legendre points through medig's chunking) completed: "
              f"{', '.join(medig_ok) or 'none'} (tried batches {medig_batches}).")]
    write_section(args.results, "memory", lines)


if __name__ == "__main__":
    main()
