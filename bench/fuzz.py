# SPDX-License-Identifier: Apache-2.0
"""A fuzzing campaign against ``medig audit``: seeded mutants of real files, plus hand-made cases.

The property (issue 12), checked by :mod:`tests.fuzz.harness`:

- the reader, alone in a child process per file, ends with an image or an ``ImageReadError`` (no
  other exception, no signal), within 20 s and 2 GB of extra memory (``RLIMIT_AS``);
- one ``medig audit`` over the whole corpus (2 decoding workers, the tiny test model at 64 px)
  exits 0 or 3, prints no traceback, and gives every file exactly one ok or error row (one per
  frame for a multi-frame file), and no other row.

``--count`` mutants are written from the image files under ``--source`` (default: the bundled
``examples/fundus``) and from files generated in formats the examples lack (16-bit PNG, LZW and
greyscale TIFF, progressive and CMYK JPEG, native multi-frame, RLE, JPEG 2000 and 12-bit DICOM).
The mutations (bit flips in headers and pixel data, interesting values, truncation, random blocks,
inserted bytes, removed or duplicated chunks and DICOM elements) are chosen by ``--seed``, so a
seed and a source folder name a corpus exactly.

Usage::

    python bench/fuzz.py --seed 2026 --count 400 [--source DIR ...] [--no-cases] [--keep DIR]
                         [--quick] [--results bench/RESULTS.md]

``--quick`` is 40 mutants. Exit status 1 when the property is violated (the violations are
printed).
"""
from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from _common import REPO, header, machine, table, write_section  # noqa: E402

from tests.fuzz.cases import make_edge_cases  # noqa: E402
from tests.fuzz.harness import MEMORY_MB, SECONDS_PER_FILE, check_folder  # noqa: E402
from tests.fuzz.mutate import generated_sources, make_corpus, source_files  # noqa: E402


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--count", type=int, default=400, help="mutants to write (default 400)")
    p.add_argument("--source", nargs="+", default=[str(REPO / "examples" / "fundus")],
                   help="folders of image files to mutate (default: examples/fundus)")
    p.add_argument("--no-generated", action="store_true",
                   help="mutate only the --source files, not the generated ones")
    p.add_argument("--no-cases", action="store_true", help="leave out the hand-made cases")
    p.add_argument("--workers", type=int, default=2, help="decoding workers of the audit")
    p.add_argument("--keep", help="write the corpus and the audit here (kept) instead of a "
                                  "temporary folder")
    p.add_argument("--quick", action="store_true", help="40 mutants")
    p.add_argument("--results", help="replace the '## fuzz' section of this Markdown file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    count = 40 if args.quick else args.count
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="medig-fuzz-"))
    if work.exists() and args.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        sources = source_files(args.source)
        if not args.no_generated:
            sources += generated_sources(work / "generated")
        corpus = work / "corpus"
        made = make_corpus(sources, corpus, seed=args.seed, count=count)
        cases = {} if args.no_cases else make_edge_cases(corpus)
        start = time.monotonic()
        report = check_folder(corpus, work / "out", workers=args.workers)
        total = time.monotonic() - start
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    status_of: dict[str, str] = {}
    for probe in report.probes:
        status_of[Path(probe["path"]).name] = probe["status"]
    for name, kinds in made.items():
        for kind in kinds:
            by_kind[kind][status_of.get(name, "?")] += 1
    reasons = collections.Counter()
    for row in report.rows:
        if row["status"] == "error":
            reasons[(row["error"] or "").split(" (")[0].split(":")[0][:60]] += 1
    ok_rows = sum(r["status"] == "ok" for r in report.rows)
    slowest = sorted(report.probes, key=lambda p: -p["seconds"])[:3]
    hungriest = sorted(report.probes, key=lambda p: -p["extra_mb"])[:3]

    command = "python bench/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = header("fuzz", command.strip(), machine())
    lines += [
        f"Corpus: {len(made)} mutants of {len(sources)} source files (seed {args.seed}), "
        f"{len(cases)} hand-made cases; {report.files} entries in all. Audit: "
        f"`medig audit` with {args.workers} decoding workers, tiny test model, 64 px. The machine "
        "was shared with other jobs (timings are upper bounds).",
        "",
        f"- **property {'holds' if not report.violations else 'VIOLATED'}**: "
        f"{len(report.violations)} violation(s)",
        f"- audit: exit code {report.exit_code}, {len(report.rows)} rows ({ok_rows} ok, "
        f"{len(report.rows) - ok_rows} error), {report.audit_seconds:.1f} s, peak RSS "
        f"{report.audit_peak_mb:.0f} MB (audit process and workers); traceback on stderr: "
        f"{'yes' if 'Traceback' in report.stderr else 'no'}, other stderr lines: "
        f"{sum(1 for line in report.stderr.splitlines() if line.strip())}",
        f"- reader per file (limits {SECONDS_PER_FILE:g} s, {MEMORY_MB} MB): slowest "
        + ", ".join(f"{p['seconds']:.2f} s" for p in slowest)
        + "; largest extra resident memory "
        + ", ".join(f"{p['extra_mb']:.0f} MB" for p in hungriest),
        f"- whole campaign: {total:.0f} s",
        "",
        "Reader outcome per mutation (a file with two mutations counts under both):",
        "",
    ]
    lines += table(["mutation", "ok", "error", "other"],
                   [[k, c["ok"], c["error"], sum(v for s, v in c.items() if s not in
                                                 ("ok", "error"))]
                    for k, c in sorted(by_kind.items())])
    lines += ["", "Most frequent error reasons in the audit's rows:", ""]
    lines += table(["reason", "rows"], [[r or "(empty)", n] for r, n in reasons.most_common(12)])
    if report.violations:
        lines += ["", "Violations:", ""] + [f"- {v[:300]}" for v in report.violations]
    write_section(args.results, "fuzz", lines)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
