# SPDX-License-Identifier: Apache-2.0
"""Trust checks (issue 13): the demo-model study that chose the thresholds, and their cost.

``study``: a folder of fresh synthetic photographs (``medig.synthetic.generate``, seed 777001:
not a training seed, 1000-1039) is audited with the demo model and the default settings
(``python -m medig audit IN --out OUT --sanity-sample S``); from ``results.jsonl`` and
``manifest.json`` it reports the distribution of baseline agreement, the share of maps that beat
random removal (predicted referable / not), the sanity check, and the measurements behind each
threshold of :mod:`medig.checks.thresholds`:

- agreement of independent noise maps (the "unrelated maps" level) at 256 and 512 px;
- faithfulness with single-pixel removal and with the probability instead of its log-odds;
- the randomisation test of explainers that ignore the model (input intensity, an edge map),
  mixtures of the edge map with IG's |map|, and IG on an untrained DemoNet, on the same images.

``cost``: a 200-image cohort (PNG/JPEG alternately, 640 px, as ``bench/audit.py``) is audited by
two processes per repetition, interleaved: the default audit without the per-image checks
(``--no-trust-checks``) and with them, both with ``--sanity-sample 0``; then once with the full
default (sanity check on 8 images), whose sanity seconds come from ``manifest.json``. Wall time
per process includes start-up, overlays and the report.

Usage::

    python bench/trust.py study [--quick] [--results bench/RESULTS.md]
    python bench/trust.py cost [--quick] [--n 200] [--reps 2] [--results bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, machine, spread, table, write_section

STUDY_SEED = 777001  # not a training seed (1000-1039), not examples/evaluate_demo_model.py's


def _quantiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    qs = statistics.quantiles(values, n=20, method="inclusive")
    return (f"{qs[0]:.2f} / {qs[4]:.2f} / {statistics.median(values):.2f} / {qs[14]:.2f} / "
            f"{qs[18]:.2f}")


def _write_pngs(folder: Path, n: int, size: int, seed: int, jpeg_every: int = 0) -> None:
    from PIL import Image

    from medig.synthetic import generate

    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, n, 16):
        count = min(16, n - start)
        imgs = generate(count, size, seed=seed + start)[0]
        for j in range(count):
            i = start + j
            im = Image.fromarray(imgs[j].permute(1, 2, 0).contiguous().numpy())
            if jpeg_every and i % jpeg_every:
                im.save(folder / f"img{i:04d}.jpg", quality=95)
            else:
                im.save(folder / f"img{i:04d}.png")


def _audit(folder: Path, out: Path, *extra: str) -> tuple[float, int, str]:
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "medig", "audit", str(folder), "--out", str(out),
                           "--quiet", *extra], capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, proc.returncode, proc.stdout + proc.stderr


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()
            if line.strip()]


# ------------------------------------------------------------------------------------ study
def _null_agreement(size: int, n: int = 200) -> list[float]:
    import torch

    from medig.checks import baseline_agreement
    from medig.preprocess import fov_mask
    from medig.synthetic import generate

    g = torch.Generator().manual_seed(0)
    fov = fov_mask(generate(1, size, seed=STUDY_SEED)[0].float() / 255).expand(n, 1, size, size)
    a = torch.randn((n, 3, size, size), generator=g)
    b = torch.randn((n, 3, size, size), generator=g)
    return baseline_agreement(a, b, fov).tolist()


def _explainers(model, ig):
    import torch

    def edge(_model, x, _target):
        grey = x.mean(dim=1, keepdim=True)
        out = torch.zeros_like(grey)
        out[..., :, 1:] += (grey[..., :, 1:] - grey[..., :, :-1]).abs()
        out[..., 1:, :] += (grey[..., 1:, :] - grey[..., :-1, :]).abs()
        return out

    def mix(alpha):
        def explain(m, x, t):
            a = ig(m, x, t).sum(dim=1, keepdim=True).abs()
            e = edge(m, x, t)
            a = a / a.flatten(1).mean(dim=1).view(-1, 1, 1, 1)
            e = e / e.flatten(1).mean(dim=1).view(-1, 1, 1, 1)
            return alpha * e + (1 - alpha) * a
        return explain

    return {"input intensity": lambda _m, x, _t: x, "edge map": edge,
            "25% edge map + 75% IG magnitude": mix(0.25),
            "50% edge map + 50% IG magnitude": mix(0.5)}


def study(args: argparse.Namespace) -> None:
    import torch

    import medig
    from medig.attr.outputs import explained_output
    from medig.checks import deletion_curve, ig_explainer, randomisation_test, thresholds
    from medig.checks.deletion import faithfulness_output
    from medig.models import DemoNet
    from medig.preprocess import FundusPreprocess
    from medig.synthetic import generate

    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.n or (32 if args.quick else 96)
    sanity_n = 8  # the audit's default sample
    probe_n = 8 if args.quick else 16  # images of the threshold measurements
    info = machine()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    tmp = Path(tempfile.mkdtemp(prefix="medig-bench-trust-"))
    folder, out = tmp / "in", tmp / "out"
    _write_pngs(folder, n, 256, STUDY_SEED)
    seconds, rc, text = _audit(folder, out, "--sanity-sample", str(sanity_n), "--threads",
                               str(args.threads), "--save-attributions")
    log(f"audit of {n} images: {seconds:.0f} s, rc {rc}\n{text[-500:]}")
    rows = [r for r in _rows(out) if r["status"] == "ok"]
    manifest = json.loads((out / "manifest.json").read_text())
    sanity = manifest["trust_checks"]["sanity_check"]
    ref = [r for r in rows if r["predicted_index"] == 1]
    non = [r for r in rows if r["predicted_index"] != 1]
    agree = [r["baseline_agreement"] for r in rows if r["baseline_agreement"] is not None]
    overlap = [r["baseline_topk_overlap"] for r in rows if r["baseline_topk_overlap"] is not None]

    def beat(group):
        vals = [r["faithfulness"] for r in group if r["faithfulness"] is not None]
        return (f"{sum(v > thresholds.FAITHFULNESS_MIN for v in vals)}/{len(vals)} "
                f"({100 * sum(v > 0 for v in vals) / max(1, len(vals)):.0f}%); quantiles "
                f"{_quantiles(vals)}")

    # Faithfulness variants on the same images and maps (recomputed with the audit's settings).
    model = medig.load_model("demo").model.eval()
    raw = generate(n, 256, seed=STUDY_SEED)[0] if n <= 16 else torch.cat(
        [generate(min(16, n - s), 256, seed=STUDY_SEED + s)[0] for s in range(0, n, 16)])
    x, fov = FundusPreprocess(256)(list(raw))
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    import numpy as np

    saved = torch.stack([torch.from_numpy(np.load(out / "attributions" / f"img{i:04d}.png.npz")[
        "attributions"]) for i in range(n)])
    variants = {"4-px patches, log-odds (audit)": {}, "single pixels, log-odds": {"patch": 1},
                "4-px patches, probability": {"output": "probability"}}
    shares: dict[str, list[float]] = {k: [] for k in variants}
    for s in range(0, n, 8):
        xb, fb = x[s:s + 8], fov[s:s + 8]
        for name, opts in variants.items():
            opts = dict(opts)
            forward = (explained_output(model, "probability") if opts.pop("output", None)
                       else faithfulness_output(model, "probability"))
            res = deletion_curve(forward, xb, saved[s:s + 8], pred[s:s + 8], fb, **opts)
            shares[name] += res.faithfulness.tolist()
    is_ref = (pred == 1).tolist()

    def share(vals, keep):
        kept = [v for v, k in zip(vals, keep) if k and not math.isnan(v)]
        return f"{sum(v > 0 for v in kept)}/{len(kept)}"

    # Thresholds of the randomisation test: explainers that ignore the model, mixtures, and IG
    # on an untrained network, on the first sanity_n images.
    xs, fs, ps = x[:probe_n], fov[:probe_n], pred[:probe_n]
    cheap = ig_explainer(("black", "blur"), "probability")
    rand_rows = []
    for name, explain in _explainers(model, cheap).items():
        r = randomisation_test(model, xs, ps, explain=explain, fov=fs)
        rand_rows.append((name, " / ".join(f"{v:.2f}" for v in r.stage_similarity),
                          "passed" if r.passed else "FAILED"))
        log(f"{name}: {rand_rows[-1]}")
    torch.manual_seed(0)
    untrained = medig.with_normalization(DemoNet(), [0.5] * 3, [0.25] * 3).eval()
    r = randomisation_test(untrained, xs, ps, fov=fs)
    rand_rows.append(("IG, untrained DemoNet (random weights)",
                      " / ".join(f"{v:.2f}" for v in r.stage_similarity),
                      "passed" if r.passed else "FAILED"))
    null256, null512 = _null_agreement(256), _null_agreement(512, 50)

    cmd = "python bench/trust.py " + " ".join(sys.argv[1:])
    lines = header("trust study", cmd, info)
    lines += [f"Demo model, {n} fresh synthetic images (seed {STUDY_SEED}, 256 px PNG), default "
              f"audit settings (black + blur, 1% completeness); sanity sample {sanity_n}. Audit "
              f"wall time {seconds:.0f} s. Quantiles are 5% / 25% / median / 75% / 95%.", ""]
    lines += table(("figure", "value"), [
        ("images explained / predicted referable", f"{len(rows)} / {len(ref)}"),
        ("flagged incomplete", str(sum(r["flagged"] for r in rows))),
        ("baseline agreement (black vs blur), quantiles", _quantiles(agree)),
        (f"baseline agreement below {thresholds.BASELINE_AGREEMENT_MIN}",
         f"{sum(a < thresholds.BASELINE_AGREEMENT_MIN for a in agree)}/{len(agree)}"),
        ("top-5% cell overlap, quantiles (chance 0.05)", _quantiles(overlap)),
        ("agreement of independent noise maps, 256 px (200 pairs)", _quantiles(null256)),
        ("agreement of independent noise maps, 512 px (50 pairs)", _quantiles(null512)),
        ("faithfulness > 0, predicted referable", beat(ref)),
        ("faithfulness > 0, predicted not referable", beat(non)),
        ("sanity check", f"{sanity['status']}: median similarity per stage "
                         f"{' / '.join(f'{v:.2f}' for v in sanity.get('similarity', []))} "
                         f"({', '.join(sanity.get('stages', []))}); SSIM "
                         f"{' / '.join(f'{v:.2f}' for v in sanity.get('ssim', []))}; "
                         f"threshold {sanity.get('threshold')}; {sanity.get('seconds')} s"),
    ])
    lines += ["", "Faithfulness > 0 by deletion variant (same maps; referable / not referable):", ""]
    lines += table(("variant", "referable", "not referable"),
                   [(k, share(v, is_ref), share(v, [not b for b in is_ref]))
                    for k, v in shares.items()])
    lines += ["", f"Randomisation test, median Spearman similarity per stage (head first) on "
                  f"{probe_n} of the images, pass below "
                  f"{thresholds.RANDOMISATION_MAX_SIMILARITY}:", ""]
    lines += table(("explainer", "similarity per stage", "verdict"), rand_rows)
    write_section(args.results, "trust study", lines)


# ------------------------------------------------------------------------------------ cost
def cost(args: argparse.Namespace) -> None:
    n = args.n or (20 if args.quick else 200)
    reps = args.reps or (1 if args.quick else 2)
    info = machine()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    tmp = Path(tempfile.mkdtemp(prefix="medig-bench-trust-cost-"))
    folder = tmp / "in"
    _write_pngs(folder, n, 640, 1000, jpeg_every=2)  # the cohort bench/audit.py audits
    threads = ["--threads", str(args.threads)]
    configs = {
        "default audit without per-image checks": ["--no-trust-checks", "--sanity-sample", "0"],
        "default audit with per-image checks": ["--sanity-sample", "0"],
    }
    res: dict[str, list[float]] = {k: [] for k in configs}
    for rep in range(reps):
        for k, (name, extra) in enumerate(configs.items()):
            seconds, rc, text = _audit(folder, tmp / f"out{rep}_{k}", *extra, *threads)
            if rc != 0:
                raise SystemExit(f"{name} failed (rc {rc}):\n{text[-800:]}")
            res[name].append(seconds)
            log(f"rep {rep} {name}: {seconds:.1f} s")
    full = "default audit (checks + sanity check on 8 images)"
    seconds, rc, text = _audit(folder, tmp / "out_full", *threads)
    res[full] = [seconds]
    manifest = json.loads((tmp / "out_full" / "manifest.json").read_text())
    sanity_s = [manifest["trust_checks"]["sanity_check"]["seconds"]]
    log(f"{full}: {seconds:.1f} s, sanity {sanity_s[0]} s")
    base = res["default audit without per-image checks"]
    rows = []
    for name, secs in res.items():
        ratio = (spread([s / b for s, b in zip(secs, base)]) if name != full
                 else "n/a (run once after the repetitions: only its sanity seconds count)")
        rows.append((name, spread(secs), spread([n / s for s in secs]), ratio))
    cmd = "python bench/trust.py " + " ".join(sys.argv[1:])
    lines = header("trust cost", cmd, info)
    lines += [f"{n} synthetic photographs at 640 px (PNG/JPEG alternately), demo model at 256 px, "
              f"default settings, {reps} repetition(s) interleaved, one process per run (wall time "
              f"includes start-up, overlays and report); torch threads {args.threads or 'default'}."
              " Shared machine: the ratios, measured side by side, are the figure.", ""]
    lines += table(("run", "wall s", "images/s", "time vs without checks"), rows)
    lines += ["", f"Sanity check (8 images, 4 stages, from manifest.json of the full default run):"
                  f" {spread(sanity_s)} s per audit, a fixed cost."]
    write_section(args.results, "trust cost", lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("study", "cost"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--results", help="also replace this benchmark's section in this file")
    args = ap.parse_args()
    (study if args.what == "study" else cost)(args)


if __name__ == "__main__":
    main()
