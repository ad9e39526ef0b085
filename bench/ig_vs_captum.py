# SPDX-License-Identifier: Apache-2.0
"""Images/s to meet the completeness rule on every image: medig vs plain Captum.

The rule is medig's: ``|delta| <= max(atol, 1% of |F(x) - F(x')|)``, with ``atol`` the audit's default
for the explained output (``--atol``; 1e-3 for probabilities, 1e-6 for logits; ``--atol 1e-6`` for the
relative 1% alone). Configurations, all on the same model, the same synthetic fundus images and the
same device:

- ``medig``: ``FundusIntegratedGradients(model).explain(x, target=pred, completeness_tol=0.01,
  completeness_atol=atol)`` (adaptive schedule, ``internal_batch_size="auto"``, black baseline);
- ``captum-50``: the user's obvious code, ``IntegratedGradients(model).attribute(x, baselines=0,
  target=pred, n_steps=50, internal_batch_size=chunk, return_convergence_delta=True)`` with the
  parameters requiring grad as loaded (Captum's default, 50 Gauss-Legendre steps);
- ``captum-N*``: the same at N*, the smallest step count of the grid that meets the rule on every
  image (searched on the same images first; the grid is fine at small counts: 2, 3, 4, 6, 8, ...);
- ``captum-N* no-param-grad``: the same with ``requires_grad_(False)`` on the parameters, to separate
  the two sources of speed-up (fewer evaluations vs no parameter gradients).

``chunk`` (Captum's internal batch size) is medig's automatic chunk for the image size, so that both
run the same number of path points per pass. "Complete" is the rule above, with F the softmax
probability of the predicted class (``--output logit`` for the logit).

Each measured run is a fresh subprocess (so that its peak RSS is its own: ru_maxrss after the run
minus ru_maxrss after loading and a one-point warm-up); runs are interleaved (repetition outer,
batch size, then configuration inner) so machine load hits all configurations alike.

Usage: ``python bench/ig_vs_captum.py [--quick] [--models demo resnet18 resnet50] [--results FILE]``
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    MODELS,
    build_model,
    header,
    images,
    machine,
    maxrss_bytes,
    med,
    parse_or_work,
    run_worker,
    spread,
    table,
    write_section,
)

GRID = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 50, 64, 96, 128, 192, 256, 384, 512)
TOL = 0.01


def _complete(delta, score, base, atol):
    """medig's rule, |delta| <= max(atol, TOL * |F(x) - F(x')|), recomputed here."""
    return delta.abs() <= (TOL * (score - base).abs().double()).clamp_min(atol)


def _scores(fn, x, target):
    import torch

    with torch.no_grad():
        s = fn(x).gather(1, target.view(-1, 1))[:, 0]
        b = fn(torch.zeros_like(x)).gather(1, target.view(-1, 1))[:, 0]
    return s, b


def _captum(fn, x, target, n_steps, chunk):
    from captum.attr import IntegratedGradients

    return IntegratedGradients(fn).attribute(
        x, baselines=0, target=target, n_steps=n_steps, internal_batch_size=chunk,
        return_convergence_delta=True)


# ---------------------------------------------------------------------------------- worker side
def worker(spec: dict) -> dict:
    import torch

    from medig.attr import FundusIntegratedGradients
    from medig.attr.chunking import auto_chunk_size

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec.get("device") or "cpu")
    cuda = device.type == "cuda"
    fn = build_model(spec["model"], spec["output"]).to(device)
    x_all = torch.load(spec["images"], weights_only=True).to(device)
    with torch.no_grad():
        target_all = fn(x_all).argmax(dim=1)
    score, base = _scores(fn, x_all, target_all)
    chunk = auto_chunk_size(x_all[:1])
    config = spec["config"]
    if config.endswith("nograd"):
        for p in fn.parameters():
            p.requires_grad_(False)
    # medig variants: "medig", "medig-fp16", "medig-bf16", "medig-compile", "medig-fp16-compile"
    path_dtype = ({"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.split("-")[1])
                  if config.startswith("medig-") else None)
    explained = fn
    compile_s = 0.0
    if config.startswith("medig") and config.endswith("compile"):
        from medig.attr.compiled import PaddedCompiledForward

        explained = PaddedCompiledForward(fn, chunk)
        t0 = time.perf_counter()  # compile outside the timed loop; reported on its own
        FundusIntegratedGradients(explained).explain(x_all[:1], target=target_all[:1],
                                                     completeness_tol=None, n_steps=2,
                                                     path_dtype=path_dtype)
        if cuda:
            torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
        if explained.failed:
            raise RuntimeError(f"compile failed: {explained.failed}")
    # warm-up: one point through forward and input backward
    w = x_all[:1].clone().requires_grad_(True)
    torch.autograd.grad(fn(w)[0, target_all[0]], w)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = maxrss_bytes()
    b = spec["batch"]
    deltas, steps = [], []
    t0 = time.perf_counter()
    for start in range(0, x_all.shape[0], b):
        x, t = x_all[start:start + b], target_all[start:start + b]
        if config.startswith("medig"):
            e = FundusIntegratedGradients(explained).explain(
                x, target=t, completeness_tol=TOL, completeness_atol=spec["atol"],
                path_dtype=path_dtype)
            deltas.append(e.delta.double())
            steps += e.n_steps.tolist()
        else:
            _attr, delta = _captum(fn, x, t, spec["n_steps"], chunk)
            deltas.append(delta.double())
            steps += [spec["n_steps"]] * x.shape[0]
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    rss1 = (torch.cuda.max_memory_allocated(device) if cuda else 0) + maxrss_bytes()
    delta = torch.cat(deltas)
    if config == "medig":  # medig's delta is against its own scores; same F, same baseline
        pass
    delta = delta.cpu()
    score, base = score.cpu(), base.cpu()
    rel = delta.abs() / (score - base).abs().double().clamp_min(1e-300)
    ok = _complete(delta, score, base, spec["atol"])
    return {"seconds": seconds, "images": int(x_all.shape[0]), "steps": steps,
            "rel_max": float(rel.max()), "rel_median": float(rel.median()),
            "complete": int(ok.sum()), "rss_delta": rss1 - rss0, "rss_peak": rss1,
            "chunk": chunk, "compile_s": compile_s}


# ---------------------------------------------------------------------------------- parent side
def grid_search(key: str, output: str, x, grid, log, atol: float,
                device: str = "cpu") -> tuple[int | None, list]:
    """Smallest grid step count meeting the rule on every image (parameters frozen: same result)."""
    import torch

    from medig.attr.chunking import auto_chunk_size

    x = x.to(device)
    fn = build_model(key, output).to(device)
    for p in fn.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        target = fn(x).argmax(dim=1)
    score, base = _scores(fn, x, target)
    chunk = auto_chunk_size(x[:1])
    tried = []
    for n in grid:
        t0 = time.perf_counter()
        _a, delta = _captum(fn, x, target, n, chunk)
        delta, score, base = delta.cpu(), score.cpu(), base.cpu()
        rel = delta.double().abs() / (score - base).abs().double().clamp_min(1e-300)
        ok = _complete(delta.double(), score, base, atol)
        tried.append((n, float(rel.max()), float(rel.median()), int(ok.sum())))
        log(f"  grid {key} n_steps={n}: max rel {rel.max():.4f}, median {rel.median():.4f}, "
            f"complete {int(ok.sum())}/{len(ok)} ({time.perf_counter() - t0:.0f} s)")
        if bool(ok.all()):
            return n, tried
    return None, tried


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few images and repetitions (see plan)")
    ap.add_argument("--models", nargs="+", default=None, choices=list(MODELS))
    ap.add_argument("--n", type=int, default=None, help="images per model (overrides the plan)")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--max-grid", type=int, default=512, help="largest Captum step count tried")
    ap.add_argument("--n-star", nargs="+", default=[], metavar="MODEL=N",
                    help="skip the grid search for MODEL, using N found earlier ('none': not reached "
                         "within --max-grid)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads per measured process (0: torch's default)")
    ap.add_argument("--batches", type=int, nargs="+", default=None,
                    help="batch sizes (default: 1 and all the images)")
    ap.add_argument("--output", choices=("probability", "logit"), default="probability")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (every configuration alike)")
    ap.add_argument("--medig-variants", nargs="*", default=[],
                    choices=("fp16", "bf16", "compile", "fp16-compile", "bf16-compile"),
                    help="extra medig rows: autocast path passes and/or the compiled forward")
    ap.add_argument("--no-param-grad", action="store_true",
                    help="add Captum-50 with the parameters frozen (separates that speed-up)")
    ap.add_argument("--atol", type=float, default=None,
                    help="absolute part of the rule (default: the audit's for --output)")
    args = parse_or_work(ap, worker)
    if args is None:
        return

    import torch

    from medig.attr.completeness import default_atol

    atol = args.atol if args.atol is not None else default_atol(args.output)
    if args.threads:
        torch.set_num_threads(args.threads)
    # plan: model -> (images, reps); batch sizes are 1 and all the images
    if args.quick:
        plan = {"demo": (4, 2), "resnet18": (4, 2), "resnet18-trained": (4, 2), "resnet50": (1, 1)}
        models = args.models or ["demo", "resnet18", "resnet18-trained"]
    else:
        plan = {"demo": (16, 3), "resnet18": (16, 3), "resnet18-trained": (16, 3),
                "resnet50": (4, 2)}
        models = args.models or ["demo", "resnet18", "resnet18-trained"]
    info = machine()
    log = lambda s: print(s, file=sys.stderr, flush=True)
    rows, notes, grid_rows = [], [], []
    tmp = Path(tempfile.mkdtemp(prefix="medig-bench-"))
    for key in models:
        n, reps = plan[key]
        n, reps = args.n or n, args.reps or reps
        size = MODELS[key][1]
        x = images(n, size)
        path = tmp / f"{key}.pt"
        torch.save(x, path)
        log(f"{key} at {size} px, {n} images: grid search")
        t0 = time.perf_counter()
        given = dict(kv.split("=") for kv in args.n_star)
        if key in given:  # from an earlier run's grid search on the same images (see its log)
            n_star = None if given[key] == "none" else int(given[key])
            tried = []
        else:
            n_star, tried = grid_search(key, args.output, x,
                                        [g for g in GRID if g <= args.max_grid], log, atol,
                                        args.device)
        grid_rows.append((key, size, n, n_star, tried, time.perf_counter() - t0))
        configs = [("medig", 0)] + [(f"medig-{v}", 0) for v in args.medig_variants]
        configs.append(("captum-50", 50))
        if n_star is not None and n_star != 50:
            configs.append((f"captum-{n_star}", n_star))
        elif n_star is None:  # not reached within the grid: the largest tried bounds the speed-up from below
            configs.append((f"captum-{args.max_grid} (rule not met)", args.max_grid))
        if args.no_param_grad:
            configs.append(("captum-50 no-param-grad", 50))
        batches = args.batches or sorted({1, n})
        results: dict[tuple[int, str], list[dict]] = {}
        for rep in range(reps):
            for b in batches:
                for name, steps in configs:
                    spec = {"model": key, "output": args.output, "images": str(path),
                            "device": args.device,
                            "batch": b, "config": name if name.startswith("medig") else (
                                "captum-nograd" if name.endswith("no-param-grad") else "captum"),
                            "n_steps": steps, "threads": args.threads, "atol": atol}
                    r = run_worker([__file__, "--worker", json.dumps(spec)])
                    log(f"  rep {rep} batch {b} {name}: " + (r["error"] if "error" in r else
                        f"{r['seconds']:.1f} s, rel max {r['rel_max']:.4f}, "
                        f"complete {r['complete']}/{r['images']}, "
                        f"mean steps {sum(r['steps']) / len(r['steps']):.1f}, "
                        f"peak +{r['rss_delta'] / 2**20:.0f} MiB"))
                    results.setdefault((b, name), []).append(r)
        for b in batches:
            ok_runs = {name: [r for r in results[(b, name)] if "error" not in r]
                       for name, _ in configs}
            ips = {name: [r["images"] / r["seconds"] for r in runs]
                   for name, runs in ok_runs.items()}
            # ratio per repetition (side by side), then median over repetitions
            for name, _ in configs:
                runs = ok_runs[name]
                if not runs:
                    rows.append((key, size, b, name, "failed: " + results[(b, name)][0]["error"][:80],
                                 *[""] * 6))
                    continue
                steps = [s for r in runs for s in r["steps"]]
                ratio = [m / c for m, c in zip(ips["medig"], ips[name])] if name != "medig" else []
                rows.append((
                    key, size, b, name, spread(ips[name]),
                    f"{sum(steps) / len(steps):.1f}",
                    f"{max(r['rel_max'] for r in runs):.4f}",
                    f"{med([r['rel_median'] for r in runs]):.4f}",
                    f"{min(r['complete'] for r in runs)}/{runs[0]['images']}",
                    f"{med([r['rss_delta'] / 2**20 for r in runs]):.0f}",
                    spread(ratio) if ratio else "1 (reference)",
                ))
    cmd = "python bench/ig_vs_captum.py " + " ".join(a for a in sys.argv[1:])
    title = "ig_vs_captum" if args.device == "cpu" else f"ig_vs_captum ({args.device})"
    lines = header(title, cmd, info)
    lines += [(f"Output explained: {args.output} of the predicted class; black baseline; rule "
              f"|delta| <= max({atol:g}, {TOL:.0%} of |F(x) - F(x')|) for medig and Captum alike."),
              ""]
    lines += [("Grid search (Captum Gauss-Legendre, same images; N* = smallest step count with every "
              "image meeting the rule):"), ""]
    lines += table(("model", "px", "images", "N*", "tried: steps (max rel err, median, complete)",
                    "search s"),
                   [(k, s, n, ns if ns is not None else f"none <= {args.max_grid}",
                     "; ".join(f"{t[0]} ({t[1]:.3f}, {t[2]:.3f}, {t[3]}/{n})" for t in tr),
                     f"{sec:.0f}")
                    for k, s, n, ns, tr, sec in grid_rows])
    lines += ["", ("Throughput (images/s: median [min-max] over repetitions; speed-up = medig images/s "
              "/ this row's, per repetition, median [min-max]); peak = RSS high-water mark of the run "
              "above the loaded, warmed-up process (MiB, median):"), ""]
    lines += table(("model", "px", "batch", "config", "images/s", "evals/image", "max rel err",
                    "median rel err", "complete", "peak MiB", "medig speed-up"), rows)
    write_section(args.results, title, lines + notes)



# ---------------------------------------------------------------------------------- levers
def levers(reps: int = 7) -> list[str]:
    """channels_last, inference_mode and torch.compile on the demo model, interleaved."""
    import statistics

    import torch

    fn = build_model("demo")
    for p in fn.parameters():
        p.requires_grad_(False)
    fn_cl = build_model("demo").to(memory_format=torch.channels_last)
    for p in fn_cl.parameters():
        p.requires_grad_(False)
    x = images(64, 256)

    def grad_pass(f, pts, cl=False):
        pts = pts.contiguous(memory_format=torch.channels_last) if cl else pts.clone()
        pts.requires_grad_(True)
        torch.autograd.grad(f(pts)[:, 0].sum(), pts)

    def fwd(mode, xb):
        with mode():
            fn.model(xb)

    cases = {}
    for pts in (4, 21, 64):
        xb = x[:pts]
        cases[f"grad pass, {pts} points: contiguous"] = lambda xb=xb: grad_pass(fn, xb)
        cases[f"grad pass, {pts} points: channels_last"] = lambda xb=xb: grad_pass(fn_cl, xb, True)
    xb = x[:8]
    cases["prediction forward, 8 images: no_grad"] = lambda: fwd(torch.no_grad, xb)
    cases["prediction forward, 8 images: inference_mode"] = lambda: fwd(torch.inference_mode, xb)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for f in cases.values():
        f()  # warm-up
    for _ in range(reps):
        for k, f in cases.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    rows = []
    keys = list(cases)
    for a, b in zip(keys[::2], keys[1::2]):
        ratio = [ta / tb for ta, tb in zip(times[a], times[b])]
        rows.append((a.split(":")[0], f"{statistics.median(times[a]) * 1e3:.0f}",
                     f"{statistics.median(times[b]) * 1e3:.0f}", a.split(": ")[1],
                     b.split(": ")[1], spread(ratio)))
    # torch.compile: compile time and pass time (21 points)
    try:
        t0 = time.perf_counter()
        fc = torch.compile(fn)
        grad_pass(fc, x[:21])
        compile_s = time.perf_counter() - t0
        tc, te = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            grad_pass(fc, x[:21])
            tc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            grad_pass(fn, x[:21])
            te.append(time.perf_counter() - t0)
        rows.append(((f"grad pass, 21 points (compile took {compile_s:.0f} s; every new "
                     "batch shape recompiles)"), f"{statistics.median(te) * 1e3:.0f}",
                     f"{statistics.median(tc) * 1e3:.0f}", "eager", "torch.compile",
                     spread([a / b for a, b in zip(te, tc)])))
    except Exception as error:  # noqa: BLE001
        rows.append(("torch.compile", "", "", "eager", "compile", f"failed: {error!s:.100}"))
    return table(("measurement", "A ms", "B ms", "A", "B", "speed-up of B (A/B, median [min-max])"),
                 rows)


if __name__ == "__main__" and "--levers" in sys.argv:
    sys.argv.remove("--levers")
    _res = [a for a in sys.argv[1:]]
    _info = machine()
    _lines = header("levers (CPU)", "python bench/ig_vs_captum.py --levers", _info)
    _lines += [("Demo model (DemoNet, 256 px), softmax output, parameters frozen; 7 interleaved "
               "repetitions after warm-up."), ""] + levers()
    write_section(_res[_res.index("--results") + 1] if "--results" in _res else None,
                  "levers (CPU)", _lines)
    sys.exit(0)


if __name__ == "__main__":
    main()
