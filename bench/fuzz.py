# SPDX-License-Identifier: Apache-2.0
"""A fuzzing campaign against ``medig audit``: seeded mutants of real files, hand-made cases and
hostile masks, audited with every output option on; then the state-tampering family.

The property (:mod:`tests.fuzz.harness`):

- the reader, alone in a child process per file, ends with an image or an ``ImageReadError`` (no
  other exception, no signal), within 20 s and 2 GB of extra memory (``RLIMIT_AS``);
- one ``medig audit`` over the whole corpus (2 decoding workers, the tiny test model at 64 px) with
  ``--per-study --dicom-out --include-phi --save-attributions --masks DIR --send`` to a local
  pynetdicom storage SCP (loopback) exits 0, 3 or 4, prints no traceback, gives every file
  exactly one ok or error row (one per frame for a multi-frame file), and no other row; every
  DICOM object reaches the SCP exactly once and ``sent.jsonl`` acknowledges it once; every audit
  step acts (:mod:`tests.fuzz.trace`); ``medig report`` on the output exits 0.

``--count`` mutants are written from the image files under ``--source`` (default: the bundled
``examples/fundus``) and from files generated in formats the examples lack (16-bit PNG, LZW and
greyscale TIFF, progressive and CMYK JPEG, native multi-frame, RLE, JPEG 2000 and 12-bit DICOM).
The mutations (bit flips in headers and pixel data, interesting values, truncation, random blocks,
inserted bytes, removed or duplicated chunks and DICOM elements) are chosen by ``--seed``, so a
seed and a source folder name a corpus exactly.

The state-tampering family (:mod:`tests.fuzz.tamper`), ``--tamper-seeds`` seeds of
``--tamper-parts`` rounds each, plus an arrays, a manifest and a study-secret round per seed and
one control: a finished audit with every option on has its saved state damaged (bit flips,
truncation, wrong JSON types, non-UTF-8 bytes, swapped files) and is re-run with ``--send`` to the
same SCP, its clock a day later; the re-run must equal the untampered run and send nothing new or
twice.

Usage (the long run; CI runs ``tests/fuzz`` with 30 mutants and 6 tampering rounds)::

    python bench/fuzz.py --seed 2026 --count 400 --tamper-seeds 4 [--tamper-parts 3]
                         [--source DIR ...] [--no-cases] [--plain] [--keep DIR] [--quick]
                         [--results bench/RESULTS.md]

``--quick`` is 40 mutants and one tampering seed; ``--plain`` audits without output options (the
reader and row property only); ``--tamper-seeds 0`` skips the tampering family. Exit status 1
when a property is violated (the violations are printed).
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

from tests.fuzz.cases import make_edge_cases, make_masks  # noqa: E402
from tests.fuzz.harness import MEMORY_MB, SECONDS_PER_FILE, check_folder  # noqa: E402
from tests.fuzz.mutate import generated_sources, make_corpus, source_files  # noqa: E402
from tests.fuzz.tamper import first_audit, rounds, run_round  # noqa: E402
from tests.pacs.conftest import StorageSCP  # noqa: E402


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
    p.add_argument("--plain", action="store_true",
                   help="audit without output options (no masks, DICOM, sending or report)")
    p.add_argument("--tamper-seeds", type=int, default=4,
                   help="seeds of the state-tampering family (default 4; 0 skips it)")
    p.add_argument("--tamper-parts", type=int, default=3,
                   help="rounds per seed, each damaging every n-th state file (default 3)")
    p.add_argument("--quick", action="store_true", help="40 mutants, one tampering seed")
    p.add_argument("--results", help="replace the '## fuzz' section of this Markdown file")
    return p.parse_args(argv)


def _gist(problem: str) -> str:
    """The first line of a violation, and its last when it quotes a traceback."""
    lines = [line.strip() for line in problem.splitlines() if line.strip()]
    text = lines[0] if len(lines) < 2 else f"{lines[0][:80]} ... {lines[-1]}"
    return text[:200].replace("|", "/")


def _tamper(work: Path, seeds: list[int], parts: int) -> tuple[list[str], int]:
    """Run the tampering family; returns (Markdown lines, violations)."""
    scp = StorageSCP(work / "tamper-archive").start()
    try:
        first = first_audit(work / "tamper", scp)
        results = [(spec, *run_round(first, spec, work / "tamper-rounds" / spec.name))
                   for spec in rounds(seeds, parts)]
    finally:
        scp.stop()
    bad = sum(bool(problems) for _, _, problems in results)
    lines = [f"State tampering: seeds {', '.join(map(str, seeds))}, {parts} part rounds per seed, "
             f"an arrays, a manifest and a study-secret round per seed, one control; first audit "
             f"exit code "
             f"{first.run.code}, {len(first.run.rows)} rows, {len(first.run.received)} objects "
             f"sent. **{len(results) - bad} of {len(results)} rounds hold.**", ""]
    lines += table(["round", "files tampered", "verdict", "first violation"],
                   [[spec.name, sum(len(t.files) for t in done),
                     "holds" if not problems else "VIOLATED",
                     _gist(problems[0]) if problems else ""]
                    for spec, done, problems in results])
    for spec, done, problems in results:
        if problems:
            lines += ["", f"Round {spec.name}:", ""] + [f"- tampered: {t}" for t in done]
            lines += [f"- violation: {' '.join(p.split())[:400]}" for p in problems]
    return lines, bad


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    count = 40 if args.quick else args.count
    seeds = [args.seed + k for k in range(1 if args.quick else args.tamper_seeds)]
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="medig-fuzz-"))
    if work.exists() and args.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    tamper_lines: list[str] = []
    tamper_bad = 0
    scp = None
    try:
        sources = source_files(args.source)
        if not args.no_generated:
            sources += generated_sources(work / "generated")
        corpus = work / "corpus"
        made = make_corpus(sources, corpus, seed=args.seed, count=count)
        cases = {} if args.no_cases else make_edge_cases(corpus)
        masks = None if args.no_cases or args.plain else work / "masks"
        if masks is not None:
            make_masks(masks)
        scp = None if args.plain else StorageSCP(work / "archive").start()
        start = time.monotonic()
        report = check_folder(corpus, work / "out", workers=args.workers, masks=masks, scp=scp,
                              full=not args.plain)
        total = time.monotonic() - start
        if scp is not None:
            scp.stop()
            scp = None
        if seeds and not args.plain:
            tamper_lines, tamper_bad = _tamper(work, seeds, args.tamper_parts)
    finally:
        if scp is not None:
            scp.stop()
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
        f"`medig audit` with {args.workers} decoding workers, tiny test model, 64 px"
        + ("" if args.plain else ", --per-study --dicom-out --include-phi --save-attributions "
           "--masks (hostile masks) --send (local SCP), then `medig report`")
        + ". The machine was shared with other jobs (timings are upper bounds).",
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
        f"- DICOM: {len(report.received)} objects received by the SCP; steps that acted: "
        f"{len(report.steps)}; `medig report`: exit code {report.report_code}",
        f"- whole campaign (fuzz audit): {total:.0f} s",
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
    if tamper_lines:
        lines += ["", *tamper_lines]
    write_section(args.results, "fuzz", lines)
    return 1 if report.violations or tamper_bad else 0


if __name__ == "__main__":
    sys.exit(main())
