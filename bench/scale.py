# SPDX-License-Identifier: Apache-2.0
"""A large synthetic cohort end to end on CPU: peak memory and where the time goes, 1k vs 10k images.

``--n`` synthetic fundus photographs at ``--px`` (default 10,000 at 128 px) are generated in chunks
of 64 and written as PNG files (reused by later runs in the same ``--dir``), then audited by
``medig audit`` with a tiny CNN (two 8-channel convolutions; loaded through the
``package.module:factory`` spec) at the audit's defaults otherwise (black + blur baselines, cohort
colour scale, report). The audit runs in a fresh process whose phases are timed by wrapping medig's
own functions: input discovery, hashing, the batch loop, and rank 0's merge (``finalise_audit``:
cohort colour scale, overlays, ``results.*``, manifest) and report. Then the same command is run
again (everything resumed: the cost of a re-run over a finished audit). Peak RSS is
``ru_maxrss`` of the audit process (and, separately, of its DataLoader workers).

Usage: ``python bench/scale.py [--n 1000] [--px 128] [--workers 2] [--dir DIR] [--results FILE]``
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, machine, parse_or_work, run_worker, table, write_section

TINY_MODEL = '''
import torch
from torch import nn


def make():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    return net.eval()
'''


def make_cohort(folder: Path, n: int, px: int, log) -> float:
    """Write ``n`` PNG photographs (chunks of 64 per ``generate`` call); returns seconds spent."""
    from PIL import Image

    from medig.synthetic import generate

    folder.mkdir(parents=True, exist_ok=True)
    done = folder / f".complete-{n}-{px}"
    if done.is_file():
        return 0.0
    t0 = time.perf_counter()
    for k, start in enumerate(range(0, n, 64)):
        count = min(64, n - start)
        imgs = generate(count, px, seed=10_000 + k)[0]
        for j in range(count):
            sub = folder / f"site{(start + j) // 1000:02d}"
            sub.mkdir(exist_ok=True)
            Image.fromarray(imgs[j].permute(1, 2, 0).contiguous().numpy()).save(
                sub / f"img{start + j:05d}.png", compress_level=1)
        if k % 20 == 0:
            log(f"  generated {start + count}/{n} ({time.perf_counter() - t0:.0f} s)")
    done.write_text("ok")
    return time.perf_counter() - t0


def worker(spec: dict) -> dict:
    """Run ``medig audit`` in this process with its phases timed."""
    import torch  # noqa: F401 - imported before timing starts

    import medig.audit.finalise as fin
    import medig.audit.pipeline as pl
    from medig.cli import main as cli

    times: dict[str, float] = {}

    def timed(module, name: str, label: str) -> None:
        original = getattr(module, name)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                times[label] = times.get(label, 0.0) + time.perf_counter() - t0

        setattr(module, name, wrapper)

    timed(pl, "collect_inputs", "discover inputs")
    timed(pl, "_hash_items", "hash files")
    timed(pl, "finalise_audit", "merge + report (rank 0)")
    timed(fin, "cohort_scale", "  cohort colour scale")
    timed(fin, "_draw_overlays", "  overlays")
    timed(fin, "write_results", "  results.jsonl/.csv")
    timed(fin, "write_manifest", "  manifest")
    timed(fin, "build_report", "  report.pdf")
    sys.path.insert(0, spec["model_dir"])
    t0 = time.perf_counter()
    code = cli(["audit", spec["inputs"], "--out", spec["out"], "--model", "scale_tiny:make",
                "--classes", "no referable DR", "referable DR", "--size", str(spec["px"]),
                "--workers", str(spec["workers"]), "--threads", str(spec["threads"]), "--quiet"])
    times["total (in process)"] = time.perf_counter() - t0
    rows = [json.loads(line) for line in Path(spec["out"], "results.jsonl").open()]
    ok = [r for r in rows if r["status"] == "ok"]
    return {
        "code": code, "times": times, "rows": len(rows), "ok": len(ok),
        "flagged": sum(bool(r["flagged"]) for r in ok),
        "mean_steps": sum(r["n_steps"] for r in ok) / max(1, len(ok)),
        "rss_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "report_pages": _pages(Path(spec["out"], "report.pdf")),
        "report_bytes": Path(spec["out"], "report.pdf").stat().st_size,
    }


def _pages(path: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(path).pages)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 10000],
                    help="cohort sizes (each audited into a fresh folder)")
    ap.add_argument("--px", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2, help="medig audit --workers")
    ap.add_argument("--threads", type=int, default=1, help="medig audit --threads")
    ap.add_argument("--dir", default="/tmp/medig-scale", help="where images and outputs go")
    args = parse_or_work(ap, worker)
    if args is None:
        return
    log = lambda s: print(s, file=sys.stderr, flush=True)
    info = machine()
    root = Path(args.dir)
    model_dir = root / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "scale_tiny.py").write_text(TINY_MODEL)
    rows, notes = [], []
    for n in args.n:
        images = root / f"in-{n}-{args.px}"
        gen_s = make_cohort(images, n, args.px, log)
        log(f"{n} images ready ({gen_s:.0f} s to generate)")
        out = root / f"out-{n}-{args.px}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        spec = {"inputs": str(images), "out": str(out), "px": args.px, "workers": args.workers,
                "threads": args.threads, "model_dir": str(model_dir)}
        for run in ("first run", "re-run (all resumed)"):
            t0 = time.perf_counter()
            r = run_worker([__file__, "--worker", json.dumps(spec)])
            wall = time.perf_counter() - t0
            if "error" in r:
                log(f"{n} {run}: {r['error']}")
                rows.append((n, run, "failed", "", "", "", "", "", ""))
                continue
            t = r["times"]
            log(f"{n} {run}: {wall:.0f} s wall, {json.dumps(t)}")
            audit_s = t["total (in process)"] - t.get("merge + report (rank 0)", 0.0)
            rows.append((
                n, run, f"{wall:.0f}", f"{audit_s:.0f}",
                f"{t.get('merge + report (rank 0)', 0):.1f}",
                "; ".join(f"{k.strip()} {v:.1f}" for k, v in t.items() if k.startswith("  ")),
                f"{t.get('discover inputs', 0):.1f} / {t.get('hash files', 0):.1f}",
                f"{r['rss_self'] / 2**20:.0f} (workers {r['rss_children'] / 2**20:.0f})",
                f"{r['ok']}/{r['rows']} ok, {r['flagged']} flagged, {r['mean_steps']:.1f} evals; "
                f"report {r['report_pages']} pages, {r['report_bytes'] / 2**20:.1f} MiB"))
    cmd = "python bench/scale.py " + " ".join(sys.argv[1:])
    lines = header("scale", cmd, info)
    lines += [(f"Synthetic cohort at {args.px} px (PNG), tiny CNN (bench/scale.py), default audit "
               f"settings (black + blur, report), --workers {args.workers} --threads "
               f"{args.threads}, one process. Times in seconds; the audit column is everything "
               "before rank 0's merge (start-up, discovery, hashing, batch loop)."), ""]
    lines += table(("images", "run", "wall s", "audit s", "merge + report s",
                    "of which", "discover / hash s", "peak RSS MiB", "result"), rows)
    write_section(args.results, "scale", lines + notes)


if __name__ == "__main__":
    main()
