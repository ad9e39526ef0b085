# SPDX-License-Identifier: Apache-2.0
"""End-to-end ``medig audit`` vs the same loop written naively with Captum.

A folder of synthetic fundus photographs (``medig.synthetic.generate`` at ``--px``, alternately PNG
and JPEG) is audited with the demo model at 256 px by

- ``medig audit``: ``python -m medig audit IN --out OUT --quiet --baseline black`` (the same single
  black baseline as the naive loop; ``--also-default`` adds a row with the default black + blur),
  the default completeness rule per image (adaptive steps), trust and quality checks, overlays,
  results, manifest and the PDF report;
- the naive loop, in a fresh process: for each file, PIL read, ``FundusPreprocess(size=256)`` on the
  single image, model prediction, ``captum.attr.IntegratedGradients(model).attribute(x,
  baselines=0, target=pred, n_steps=N)`` (parameters requiring grad, as loaded), a green/red
  overlay PNG written with PIL. N is ``--steps`` (default: 50, Captum's default, and the N* that
  ``bench/ig_vs_captum.py`` found for the demo model; pass ``--steps 50 N*``).

Each run is a separate process: wall time from spawn to exit (start-up, model load and, for medig,
the report included, on both sides), peak RSS from ``os.wait4`` of that process. Runs are
interleaved over repetitions.

"Complete" is medig's rule for both, |delta| <= max(0.001, 1% of |F(x) - F(x')|).

Usage: ``python bench/audit.py [--quick] [--n 500] [--steps 50 128] [--results FILE]``
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, header, machine, med, spread, table, write_section


def timed(cmd: list[str]) -> tuple[float, int, int, str]:
    """Wall seconds, peak RSS bytes (os.wait4 of the process), return code, stdout."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    return seconds, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status), text


# ---------------------------------------------------------------------------------- naive loop
def naive(folder: str, out: str, steps: int, threads: int) -> None:
    import numpy as np
    import torch
    from captum.attr import IntegratedGradients
    from PIL import Image

    import medig
    from medig.attr.completeness import PROBABILITY_ATOL
    from medig.preprocess import FundusPreprocess

    if threads:
        torch.set_num_threads(threads)

    model = medig.load_model("demo").model.eval()

    class Prob(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return torch.softmax(self.m(x), dim=1)

    fn = Prob(model).eval()
    pre = FundusPreprocess(size=256)
    ig = IntegratedGradients(fn)
    Path(out).mkdir(parents=True, exist_ok=True)
    rel, met = [], []
    for path in sorted(Path(folder).iterdir()):
        im = np.asarray(Image.open(path).convert("RGB"))
        t = torch.from_numpy(im.copy()).permute(2, 0, 1)
        x, _mask = pre([t])
        with torch.no_grad():
            prob = fn(x)
        pred = prob.argmax(dim=1)
        attr, delta = ig.attribute(x, baselines=0, target=pred, n_steps=steps,
                                   return_convergence_delta=True)
        with torch.no_grad():
            gap = (prob[0, pred] - fn(torch.zeros_like(x))[0, pred]).abs()
        rel.append(float(delta.abs() / gap.clamp_min(1e-30)))
        # medig's rule, recomputed: |delta| <= max(atol, 1% of |F(x) - F(x')|)
        met.append(bool(delta.abs() <= max(PROBABILITY_ATOL, 0.01 * float(gap))))
        # overlay: channel sum, clip at the 99.5th percentile, green +, red -, over grey
        a = attr[0].sum(0).detach().numpy()
        clip = np.percentile(np.abs(a), 99.5) or 1.0
        a = np.clip(a / clip, -1, 1)
        grey = x[0].mean(0).numpy() * 0.6
        rgb = np.stack([grey + 0.4 * np.clip(-a, 0, 1), grey + 0.4 * np.clip(a, 0, 1), grey], -1)
        Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(
            Path(out) / (path.stem + ".png"))
    rel_np = np.array(rel)
    print(json.dumps({"images": len(rel), "rel_max": float(rel_np.max()),
                      "rel_median": float(np.median(rel_np)),
                      "complete": sum(met)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 images, 1 repetition")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--px", type=int, default=640, help="side of the generated photographs")
    ap.add_argument("--steps", type=int, nargs="+", default=[50],
                    help="Captum step counts of the naive loop (50 and N* of ig_vs_captum)")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--also-default", action="store_true",
                    help="add a medig run with the default baselines (black blur)")
    ap.add_argument("--results", help="also replace this benchmark's section in this file")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads in both processes (medig audit --threads; 0: default)")
    ap.add_argument("--naive", nargs=4, metavar=("IN", "OUT", "STEPS", "THREADS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive:
        naive(args.naive[0], args.naive[1], int(args.naive[2]), int(args.naive[3]))
        return
    n = args.n or (20 if args.quick else 500)
    reps = args.reps or (1 if args.quick else 2)
    info = machine()
    log = lambda s: print(s, file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="medig-bench-audit-"))
    folder = tmp / "in"
    t0 = time.perf_counter()
    all_imgs_made = make_folder_fast(folder, n, args.px)
    log(f"wrote {all_imgs_made} images at {args.px} px in {time.perf_counter() - t0:.0f} s to {folder}")

    configs = [("medig audit --baseline black", ["black"])]
    if args.also_default:
        configs.append(("medig audit (default: black blur)", ["black", "blur"]))
    configs += [(f"naive Captum n_steps={s}", s) for s in args.steps]
    res: dict[str, list[dict]] = {name: [] for name, _ in configs}
    for rep in range(reps):
        for k, (name, what) in enumerate(configs):
            out = tmp / f"out{rep}_{k}"
            if isinstance(what, list):
                cmd = [sys.executable, "-m", "medig", "audit", str(folder), "--out", str(out),
                       "--quiet", "--threads", str(args.threads), "--baseline", *what]
            else:
                cmd = [sys.executable, __file__, "--naive", str(folder), str(out), str(what), str(args.threads)]
            sec, rss, rc, text = timed(cmd)
            r = {"seconds": sec, "rss": rss, "rc": rc}
            if isinstance(what, list):
                m = re.search(r"mean ([0-9.]+) gradient evaluations", text)
                r["steps"] = float(m.group(1)) if m else float("nan")
                m = re.search(r"in ([0-9.]+) s", text)
                r["inner"] = float(m.group(1)) if m else float("nan")
                m = re.search(r"(\d+) flagged", text)
                r["flagged"] = int(m.group(1)) if m else -1
                rows = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()
                        if ln.strip()] if (out / "results.jsonl").is_file() else []
                rels = [row.get("relative_error") for row in rows
                        if isinstance(row.get("relative_error"), (int, float))]
                r["rel_max"] = max(rels) if rels else float("nan")
                r["rel_median"] = med(rels) if rels else float("nan")
                r["complete"] = n - r["flagged"]
            else:
                lines = [ln for ln in text.splitlines() if ln.startswith("{")]
                if lines:
                    r.update(json.loads(lines[-1]))
                r["steps"] = float(what)
            if rc not in (0,):
                r["error"] = text.strip()[-400:]
            log(f"rep {rep} {name}: {sec:.1f} s, peak RSS {rss / 2**20:.0f} MiB, rc {rc}, "
                f"{ {k2: v for k2, v in r.items() if k2 not in ('seconds', 'rss', 'error')} }"
                + (f"\n{r['error']}" if "error" in r else ""))
            res[name].append(r)

    ref = [n / r["seconds"] for r in res[configs[0][0]]]
    rows = []
    for name, _ in configs:
        runs = res[name]
        ips = [n / r["seconds"] for r in runs]
        ratio = [a / b for a, b in zip(ref, ips)]
        rows.append((name, spread(ips), f"{med([r['seconds'] for r in runs]):.1f}",
                     f"{med([r['steps'] for r in runs]):.1f}",
                     f"{max(r.get('rel_max', float('nan')) for r in runs):.4f}",
                     f"{med([r.get('rel_median', float('nan')) for r in runs]):.4f}",
                     f"{min(r.get('complete', -1) for r in runs)}/{n}",
                     f"{med([r['rss'] / 2**20 for r in runs]):.0f}",
                     "1 (reference)" if name == configs[0][0] else spread(ratio)))
    cmd = "python bench/audit.py " + " ".join(sys.argv[1:])
    lines = header("audit", cmd, info)
    lines += [(f"{n} synthetic photographs at {args.px} px (PNG/JPEG alternately), demo model at 256 "
              f"px, {reps} repetition(s) interleaved; wall time per process including start-up; torch "
              f"threads {args.threads or 'default'} in both."), ""]
    lines += table(("run", "images/s", "wall s", "evals/image", "max rel err", "median rel err",
                    "complete (rule)", "peak RSS MiB", "medig speed-up"), rows)
    write_section(args.results, "audit", lines)


def make_folder_fast(folder: Path, n: int, px: int) -> int:
    from PIL import Image

    from medig.synthetic import generate

    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, n, 16):
        count = min(16, n - start)
        # image i of generate depends only on (seed, i): use one seed per chunk of 16
        imgs = generate(count, px, seed=1000 + start)[0]
        for j in range(count):
            i = start + j
            im = Image.fromarray(imgs[j].permute(1, 2, 0).contiguous().numpy())
            if i % 2:
                im.save(folder / f"img{i:04d}.jpg", quality=95)
            else:
                im.save(folder / f"img{i:04d}.png")
    return n


if __name__ == "__main__":
    main()
