# SPDX-License-Identifier: Apache-2.0
"""The cohort browser (report.html) at 1,000 and 10,000 rows: file size, build time, and the time
until a headless Chromium shows a usable table.

For each size a synthetic audit folder is written: rows like ``medig audit``'s (predictions,
completeness errors, trust flags, quality verdicts, eyes, studies; 1% unreadable files) and one
side-by-side overlay per row (hard links of one 256 px overlay, so the folder costs no disk). Then
``build_html`` writes report.html (timed), and Debian's chromium (via selenium, the test kit of
``tests/report/browser_kit.py``) opens it from file:// ``--reps`` times, fresh each time:

- *usable*: the ``medig-usable`` performance mark, set once the data is parsed, the facets are
  counted and the first rows are in the table (ms from navigation start);
- *all rows*: the ``medig-rows`` mark, every row element built (in idle chunks after usable);
- *load*: the load event's end; *sort* and *filter*: one click on the completeness-error header
  and one search keystroke, timed in the page (synchronous work; layout not included).

It also writes one 512 px overlay of a synthetic photograph to measure what inlining the images
as data: URLs would add per image.

Usage::

    python bench/browser.py [--sizes 1000 10000] [--reps 3] [--results bench/RESULTS.md]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path += [str(BENCH), str(BENCH.parent / "tests" / "report")]

import browser_kit  # noqa: E402
from _common import header, machine, table, write_section  # noqa: E402

CLASSES = ["no referable DR", "referable DR"]


def _overlay_png(size: int, seed: int = 0) -> bytes:
    """A side-by-side overlay of a synthetic photograph and a blob map, as PNG bytes."""
    from medig.synthetic import generate
    from medig.visualize import clip_value, overlay, png_bytes, side_by_side

    images, _masks, _labels = generate(1, size=size, seed=seed)
    img = images[0].numpy().astype(np.float32)
    img = img / 255.0 if img.max() > 1 else img
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    amap = rng.laplace(0, 0.05, (1, size, size))
    for _ in range(6):
        cy, cx = rng.uniform(0.25, 0.75, 2)
        amap[0] += rng.choice([-1.0, 1.0]) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.002)
    fov = np.ones((1, size, size), dtype=bool)
    return png_bytes(side_by_side(img, overlay(img, amap, fov, clip_value(amap, fov, 99.0))))


def _baseline_cost(size: int, reps: int = 20, seed: int = 2) -> dict[str, float]:
    """What each baseline's own overlay adds to finalise, per image: the drawing (finalise's own
    code, on stored-like arrays) next to the averaged overlay's, the PNG's size, and the stored
    map's (float16, compressed: what StoreArrays adds to the work store)."""
    import io

    from medig.audit.finalise import _render_overlay, _render_own
    from medig.synthetic import generate

    images, _masks, _labels = generate(1, size=size, seed=seed)
    img = images[0].numpy()
    img = (img * 255).round().astype(np.uint8) if img.dtype != np.uint8 else img
    rng = np.random.default_rng(seed)
    maps = rng.laplace(0, 0.05, (2, size, size))
    arrays = {"image": img, "fov": np.ones((1, size, size), dtype=bool),
              "attr_map": (maps.mean(0, keepdims=True) / np.abs(maps).max()).astype(np.float16),
              "attr_scale": np.float64(np.abs(maps).max()), "clip": np.float64(0.1),
              "baseline_maps": (maps / np.abs(maps).max()).astype(np.float16),
              "baseline_scales": np.full(2, np.abs(maps).max())}
    with tempfile.TemporaryDirectory(prefix="medig-bench-own-") as tmp:
        def timed(draw) -> float:
            t = time.perf_counter()
            for i in range(reps):
                draw(Path(tmp) / f"{i}.png")
            return (time.perf_counter() - t) / reps * 1e3

        averaged = timed(lambda p: _render_overlay(p, arrays, 0.1))
        own = timed(lambda p: _render_own(p, arrays, 0, 0.1))
        png_kb = (Path(tmp) / "0.png").stat().st_size / 1e3
    buffer = io.BytesIO()
    np.savez_compressed(buffer, m=arrays["baseline_maps"][0])
    return {"averaged_ms": averaged, "own_ms": own, "png_kb": png_kb,
            "stored_kb": len(buffer.getvalue()) / 1e3}


def _rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        path = f"site {i % 7}/patient_{i // 2:05d}_{'LR'[i % 2]}.png"
        if i % 100 == 99:
            rows.append({"path": path, "sha256": None, "status": "error",
                         "error": "cannot identify image file", "overlay": None})
            continue
        p = float(rng.uniform(0.5, 1.0))
        pred = int(rng.integers(2))
        rel = float(abs(rng.lognormal(-5, 1.2)))
        agreement = float(rng.normal(0.3, 0.2))
        faithful = float(rng.normal(0.15, 0.1))
        flags = [f for f, on in (("baseline-dependent", agreement < 0.1),
                                 ("not-faithful", faithful <= 0)) if on]
        q = "gradeable" if rng.uniform() > 0.12 else ("ungradeable" if rng.uniform() > 0.2
                                                      else "not_fundus")
        rows.append({
            "path": path, "sha256": f"{i:064x}", "status": "ok", "error": None,
            "predicted": CLASSES[pred], "predicted_index": pred,
            "probabilities": {CLASSES[pred]: round(p, 6), CLASSES[1 - pred]: round(1 - p, 6)},
            "target": CLASSES[1], "target_index": 1, "score": round(p, 6),
            "baseline_score": 0.41, "delta": round(rel * 0.3, 6), "relative_error": round(rel, 6),
            "abs_tol": 0.001, "n_steps": int(rng.integers(16, 128)), "flagged": rel > 0.01,
            "overlay": f"overlays/{path}.png", "baseline_agreement": round(agreement, 6),
            "baseline_topk_overlap": 0.4, "faithfulness": round(faithful, 6),
            "trust_flags": (["incomplete"] if rel > 0.01 else []) + flags,
            "quality": q, "quality_reasons": [] if q == "gradeable" else ["blurred"],
            "fov_shape": "circle", "fov_fraction": 0.71, "sharpness": 0.05,
            "laterality": "LR"[i % 2], "study": f"{i // 2:08x}"[:12],
        })
    return rows


def _write_audit(root: Path, n: int, png: bytes) -> Path:
    import json

    root.mkdir(parents=True)
    rows = _rows(n)
    master = root / "overlay.png"
    master.write_bytes(png)
    # the two baselines' own overlays, as an audit with the default baselines writes them
    folders = {b: f"report_files/baselines/{b}" for b in ("black", "blur")}
    for r in rows:
        if r.get("overlay"):
            name = r["overlay"][len("overlays/"):]
            for target in [root / r["overlay"], *(root / f / name for f in folders.values())]:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(master, target)
    (root / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                        encoding="utf-8")
    manifest = {"model": {"spec": "demo", "class_names": CLASSES, "input_size": 256},
                "settings": {"completeness_tol": 0.01, "baselines": ["black", "blur"]},
                "started": "2026-12-04T12:00:00+00:00", "finished": "2026-12-04T12:30:00+00:00",
                "cohort_clip": 0.01, "baseline_overlays": folders}
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


_PAGE_TIMES = """
var nav = performance.getEntriesByType('navigation')[0];
var mark = function (n) { var m = performance.getEntriesByName(n)[0]; return m ? m.startTime : null; };
var t0 = performance.now();
document.querySelector('#tabs button[data-tab="images"]').click();
document.querySelector('#thead button[data-key="relative_error"]').click();
var t1 = performance.now();
var s = document.getElementById('search'); s.value = 'site 3'; s.dispatchEvent(new Event('input'));
var t2 = performance.now();
return {usable: mark('medig-usable'), rows: mark('medig-rows'), load: nav.loadEventEnd,
        sort: t1 - t0, filter: t2 - t1,
        shown: document.querySelectorAll('#tbody [data-path]:not([hidden])').length,
        total: document.querySelectorAll('[data-path]').length};
"""


def _open_once(page: Path) -> dict:
    driver = browser_kit.start(1366, 768)
    try:
        driver.get(page.as_uri())
        end = time.monotonic() + 60
        while driver.execute_script("return document.documentElement.dataset.rows") != "all":
            if time.monotonic() > end:
                raise RuntimeError("rows not built within 60 s")
            time.sleep(0.05)
        result = driver.execute_script(_PAGE_TIMES)
        result["errors"] = browser_kit.console_errors(driver)
        result["browser"] = driver.capabilities.get("browserVersion", "?")
        return result
    finally:
        driver.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--results")
    args = ap.parse_args()
    if browser_kit.missing():
        sys.exit(f"bench/browser.py: {browser_kit.missing()}")
    from medig.report.html import build_html

    info = machine()
    png256 = _overlay_png(256)
    png512 = _overlay_png(512, seed=1)
    rows_out, browsers = [], set()
    with tempfile.TemporaryDirectory(prefix="medig-bench-html-") as tmp:
        for n in args.sizes:
            root = _write_audit(Path(tmp) / f"audit{n}", n, png256)
            t = time.perf_counter()
            page = build_html(root)
            build_s = time.perf_counter() - t
            runs = [_open_once(page) for _ in range(args.reps)]
            assert all(r["total"] == n for r in runs), runs
            errors = sorted({e for r in runs for e in r["errors"]})
            browsers |= {r["browser"] for r in runs}

            def med(key: str, runs: list[dict] = runs) -> str:
                return f"{statistics.median(r[key] for r in runs):.0f}"

            rows_out.append([f"{n:,}", f"{page.stat().st_size / 1e6:.2f} MB", f"{build_s:.1f} s",
                             f"{med('usable')} ms", f"{med('rows')} ms", f"{med('load')} ms",
                             f"{med('sort')} ms", f"{med('filter')} ms",
                             "none" if not errors else "; ".join(errors)[:80]])
    own = {size: _baseline_cost(size) for size in (256, 512)}
    inline = len(png512) * 4 / 3
    lines = header("html (cohort browser)", "python bench/browser.py " + " ".join(sys.argv[1:]),
                   info)
    lines += [f"Median of {args.reps} fresh headless Chromium {', '.join(sorted(browsers))} "
              f"starts per size (viewport "
              "1366x768), page opened from file://. usable / all rows / load: ms from navigation "
              "start; sort / filter: one click / one keystroke, in-page script time.", ""]
    lines += table(["rows", "report.html", "build_html", "usable", "all rows", "load",
                    "sort", "filter", "console errors"], rows_out)
    lines += ["", f"Images stay in `overlays/` beside the page (0 bytes added per image). "
              f"Inlined as data: URLs, one 512 px overlay would add {inline / 1e3:.0f} kB "
              f"(256 px: {len(png256) * 4 / 3 / 1e3:.0f} kB) per image, i.e. "
              f"{inline * 1000 / 1e6:.0f} MB at 1,000 images: the page would no longer open in "
              "seconds, so images are never inlined.", ""]
    lines += ["Each baseline's own overlay (the viewer's map toggle; the synthetic rows above have "
              "two, hard links like the overlays): finalise draws the overlay half only, "
              + ", ".join(f"{own[s]['own_ms']:.0f} ms per image per baseline at {s} px (the "
                          f"averaged side-by-side overlay: {own[s]['averaged_ms']:.0f} ms), "
                          f"{own[s]['png_kb']:.0f} kB per PNG, {own[s]['stored_kb']:.0f} kB "
                          "stored per map" for s in own)
              + " (maps of Laplace noise: an upper bound; real maps compress better). Drawn once: "
              "a resumed audit or `medig report` draws nothing again.", ""]
    write_section(args.results, "html (cohort browser)", lines)


if __name__ == "__main__":
    main()
