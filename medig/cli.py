# SPDX-License-Identifier: Apache-2.0
"""The ``medig`` command: a thin shell over :func:`medig.audit.run_audit` and the report builder."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["EXIT_FAILED", "EXIT_NOT_SENT", "EXIT_OK", "EXIT_SOME_FILES_FAILED", "EXIT_USAGE", "main"]

EXIT_OK = 0  #: every input was audited
EXIT_FAILED = 1  #: the audit could not run (model, output folder, no inputs)
EXIT_USAGE = 2  #: bad command line or settings that conflict with the output folder
EXIT_SOME_FILES_FAILED = 3  #: the audit finished but some inputs could not be read or explained
EXIT_NOT_SENT = 4  #: the audit finished but some DICOM objects were not acknowledged by the PACS

_EPILOG = f"""\
examples:
  medig audit examples/fundus --out audit-out
  medig audit /data/screening --out audit-2026-11 --baseline black blur --masks /data/masks
  medig audit scans/ --out out --model torchvision:resnet50 --weights dr.pt \\
        --classes "no DR" "referable DR" --size 512 --device cuda --batch-size 16
  medig audit scans/ --out out --model timm:efficientnet_b0 --weights dr.ckpt \\
        --target "referable DR=2,3,4" --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225
  medig audit /data/screening --out audit-out --quality skip
  torchrun --nproc-per-node 4 -m medig audit /data/screening --out audit-out
  medig report audit-out --template my_hospital.toml
  medig audit /data/dicom --out out --per-study --dicom-out --include-phi --send PACS@pacs:104

exit codes:
  {EXIT_OK}  every input audited
  {EXIT_FAILED}  the audit could not run (model not loadable, weights that fit the architecture
     under no key prefix, no inputs, --out not a writable folder or in use by another audit, ...)
  {EXIT_USAGE}  usage error (a bad --model-arg, a --target naming no class of the model, a group
     with --output logit), or --out holds an audit with other settings (use --force)
  {EXIT_SOME_FILES_FAILED}  finished, but some files could not be read (see results.jsonl)
  {EXIT_NOT_SENT}  finished, but some DICOM objects were not acknowledged by the PACS (re-run)
"""


def _audit_parser(sub: argparse._SubParsersAction) -> None:
    from medig.baselines import available_baselines

    p = sub.add_parser(
        "audit", help="explain a folder of fundus photographs and write a report",
        description="Audit a fundus classifier with Integrated Gradients: predictions, "
                    "green (for) / red (against) attribution overlays, completeness statistics "
                    "and a PDF report. Re-running the same command resumes.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folders (searched recursively) or files: JPEG, PNG, TIFF, DICOM")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default="demo",
                   help="demo | FILE.pt2 | FILE.ts | torchvision:ARCH | timm:ARCH | monai:NET | "
                        "package.module:factory (default: demo)")
    p.add_argument("--weights", help="weights for torchvision:/timm:/monai:/factory models: "
                                     ".safetensors, a state dict or a training checkpoint "
                                     "(Lightning .ckpt, {'model_state_dict': ...}, ...)")
    p.add_argument("--classes", nargs="+", metavar="NAME", help="class names, in output order")
    p.add_argument("--target", default=None,
                   help="what to explain: pred (each image's predicted class), a class (index or "
                        "name), or a group 'NAME=C1,C2,...' whose summed probability is explained, "
                        "e.g. 'referable DR=2,3,4' (default: the model's declared positive class "
                        "or group, else pred)")
    p.add_argument("--baseline", nargs="+", default=["black", "blur"], metavar="NAME",
                   help="baseline(s), averaged: " + ", ".join(available_baselines())
                        + " (default: black blur)")
    p.add_argument("--completeness-tol", type=float, default=0.01,
                   help="relative completeness tolerance per image (default 0.01)")
    p.add_argument("--max-steps", type=int, default=256,
                   help="most gradient evaluations per image and baseline (default 256)")
    p.add_argument("--size", type=int, default=0,
                   help="side of the model input in pixels (default: the model's, else 512)")
    p.add_argument("--graham", action="store_true", help="Graham contrast normalisation")
    p.add_argument("--output", choices=("probability", "logit"), default="probability",
                   help="model output explained (default: class probability)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:K (default auto)")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per process (default: all cores, shared between the "
                        "processes of a node under torchrun); float32 results are bit-identical "
                        "only between runs with the same thread count")
    p.add_argument("--masks", help="folder of lesion masks named like the images "
                                   "(default: a masks/ subfolder of INPUT if present)")
    p.add_argument("--overlay-scale", choices=("cohort", "image"), default="cohort",
                   help="one colour scale for the whole audit (default) or per image")
    p.add_argument("--percentile", type=float, default=99.5,
                   help="percentile of |attribution| where colours saturate (default 99.5)")
    p.add_argument("--save-attributions", action="store_true",
                   help="also write attributions/<path>.npz")
    p.add_argument("--template", help="report template (TOML), default templates/report.toml")
    p.add_argument("--include-phi", action="store_true",
                   help="allow patient identifiers from DICOM in outputs (off by default)")
    p.add_argument("--force", action="store_true",
                   help="re-audit into an --out folder made with other settings")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    # per-study pages, DICOM output, sending to a PACS
    p.add_argument("--per-study", action="store_true",
                   help="also write studies/<id>.pdf: one page per study, both eyes side by side")
    p.add_argument("--dicom-out", action="store_true",
                   help="also write DICOM objects under DIR/dicom/: a Secondary Capture of each "
                        "DICOM image's overlay and an Encapsulated PDF of each study's page, in "
                        "the source's study (needs --include-phi; implies --per-study)")
    p.add_argument("--send", metavar="AET@HOST:PORT",
                   help="C-STORE the DICOM objects to this PACS, logging dicom/sent.jsonl; a "
                        "re-run sends only what was not acknowledged (implies --dicom-out)")
    p.add_argument("--calling-aet", default="MEDIG",
                   help="medig's AE title when sending (default MEDIG)")
    # what a model needs besides its weights, so no JSON file is needed beside them
    p.add_argument("--mean", nargs=3, type=float, metavar=("R", "G", "B"),
                   help="normalisation mean the model was trained with (0-1 or 0-255 units; "
                        "default: JSON beside the weights, else the checkpoint)")
    p.add_argument("--std", nargs=3, type=float, metavar=("R", "G", "B"),
                   help="normalisation standard deviation (as --mean)")
    p.add_argument("--input-size", type=int, metavar="N",
                   help="side of the square input the model was trained on (default: JSON, "
                        "checkpoint, or what the architecture was built for)")
    p.add_argument("--model-arg", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="constructor argument of torchvision:/timm:/monai:/factory models, the "
                        "value parsed as JSON where possible (false, 5, \"swin_t\"), e.g. "
                        "--model-arg image_size=384 drop_rate=0.2")
    # can the attributions be trusted?
    p.add_argument("--sanity-sample", type=int, default=8, metavar="N",
                   help="images of the model-randomisation sanity check (default 8; 0 disables)")
    p.add_argument("--cross-check", nargs="+", default=[], choices=("occlusion",),
                   help="also compare IG with Captum's Occlusion on a patch grid, per image")
    p.add_argument("--no-trust-checks", action="store_true",
                   help="skip the per-image baseline-agreement and faithfulness checks")
    # image-quality gate
    p.add_argument("--quality", choices=("flag", "skip", "off"), default="flag",
                   help="image-quality gate: flag (default) explains every image and marks the "
                        "ungradeable and non-fundus ones; skip leaves them unexplained (status "
                        "'skipped', not an error); off computes no verdict")
    # the completeness rule's absolute part, compiled and reduced-precision path passes
    p.add_argument("--completeness-atol", type=float, default=None, metavar="ATOL",
                   help="absolute completeness tolerance, in units of the explained output: an "
                        "image is complete when |delta| <= max(ATOL, TOL * |F(x) - F(x')|) "
                        "(default: 0.001 for --output probability, 1e-6 (float noise) for logit)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model for the path passes, once per audit (default: "
                        "only where it was measured to pay; so far nowhere: see bench/RESULTS.md)")
    p.add_argument("--path-dtype", choices=("float32", "float16", "bfloat16"), default=None,
                   help="precision of the path passes (autocast; GPUs): completeness is checked "
                        "in float32 and images missing the tolerance are redone in float32")


def _report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild report.pdf from an audit folder (no model needed)")
    p.add_argument("out", metavar="DIR", help="an audit output folder")
    p.add_argument("--template", help="report template (TOML)")
    p.add_argument("--include-phi", action="store_true",
                   help="allow patient identifiers in the report")
    p.add_argument("--per-study", action="store_true",
                   help="also rebuild studies/<id>.pdf, one page per study")


def build_parser() -> argparse.ArgumentParser:
    import medig

    parser = argparse.ArgumentParser(
        prog="medig", description="Integrated Gradients audits of fundus classifiers.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"medig {medig.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{audit,report}")
    _audit_parser(sub)
    _report_parser(sub)
    return parser


def _error(message: str) -> None:
    print(f"medig: error: {message}", file=sys.stderr)


def _run_audit(args: argparse.Namespace) -> int:
    from medig.audit import AuditError, AuditSettings, SettingsChangedError, run_audit
    from medig.audit.errors import AuditUsageError
    from medig.baselines import available_baselines
    from medig.io import ImageReadError
    from medig.models import ModelArgumentError, ModelLoadError
    from medig.pacs.steps import SendIncomplete

    unknown = [b for b in args.baseline if b not in available_baselines()]
    if unknown:
        _error(f"unknown baseline {unknown[0]!r}; known: {', '.join(available_baselines())}")
        return EXIT_USAGE
    if args.completeness_tol <= 0 or args.max_steps < 2 or args.batch_size < 1:
        _error("--completeness-tol must be > 0, --max-steps >= 2 and --batch-size >= 1")
        return EXIT_USAGE
    if args.completeness_atol is not None and not 0 <= args.completeness_atol < float("inf"):
        _error("--completeness-atol must be a finite number >= 0")
        return EXIT_USAGE
    pacs_problem = _pacs_usage_error(args)
    if pacs_problem:
        _error(pacs_problem)
        return EXIT_USAGE
    try:
        model_args = parse_model_args(args.model_arg)
    except ValueError as error:
        _error(str(error))
        return EXIT_USAGE
    settings = AuditSettings(
        model=args.model, weights=args.weights, class_names=list(args.classes or []),
        target=args.target, baselines=list(args.baseline),
        completeness_tol=args.completeness_tol, max_steps=args.max_steps, size=args.size,
        graham=args.graham, output=args.output, device=args.device,
        batch_size=args.batch_size, workers=max(0, args.workers), threads=max(0, args.threads),
        masks=args.masks,
        include_phi=args.include_phi, save_attributions=args.save_attributions,
        overlay_scale=args.overlay_scale, percentile=args.percentile, template=args.template,
        mean=args.mean, std=args.std, input_size=args.input_size, model_args=model_args,
        quality=args.quality, completeness_atol=args.completeness_atol, compile=args.compile,
        path_dtype=None if args.path_dtype == "float32" else args.path_dtype)
    settings.per_study, settings.dicom_out = args.per_study, args.dicom_out or bool(args.send)
    settings.send, settings.calling_aet = args.send, args.calling_aet
    if args.sanity_sample < 0:
        _error("--sanity-sample must be >= 0 (0 disables the sanity check)")
        return EXIT_USAGE
    settings.sanity_sample, settings.cross_check = args.sanity_sample, list(args.cross_check)
    settings.trust_checks = not args.no_trust_checks
    try:
        summary = run_audit(args.inputs, args.out, settings, force=args.force,
                            progress=not args.quiet)
    except (SettingsChangedError, AuditUsageError, ModelArgumentError) as error:
        _error(str(error))
        return EXIT_USAGE
    except SendIncomplete as error:  # results and report are written; sending is not
        _error(str(error))
        return EXIT_NOT_SENT
    except (AuditError, ModelLoadError, ImageReadError) as error:
        _error(str(error))
        return EXIT_FAILED
    except OSError as error:  # a file-system failure is one line, not a traceback
        where = f"{error.filename}: " if error.filename else ""
        _error(f"{where}{error.strerror or ' '.join(str(error).split())}")
        return EXIT_FAILED
    if summary.report is None:  # a rank other than 0 under torchrun
        return EXIT_OK
    steps = f", mean {summary.mean_steps:.1f} gradient evaluations per image" \
        if summary.mean_steps is not None else ""
    print(f"audited {summary.ok} of {summary.total} images in {summary.seconds:.1f} s "
          f"({summary.computed} computed now){steps}; {summary.flagged} flagged for incomplete "
          f"attribution, {summary.errors} could not be read")
    from medig.audit.steps.verdicts import trust_line

    print(trust_line(summary.rows, summary.out_dir))
    if args.quality != "off":
        from medig.audit.steps.quality import quality_counts

        q = quality_counts(summary.rows)
        skipped = f"; {q['skipped']} skipped (not explained)" if q["skipped"] else ""
        print(f"image quality: {q['gradeable']} gradeable, {q['ungradeable']} ungradeable, "
              f"{q['not_fundus']} not fundus photographs{skipped}")
    print(f"report: {summary.report}")
    _print_pacs_outputs(summary.out_dir, settings)
    return EXIT_SOME_FILES_FAILED if summary.errors else EXIT_OK


def _pacs_usage_error(args: argparse.Namespace) -> str | None:
    """Why the per-study/DICOM/PACS options cannot run as given, or None."""
    from medig.pacs.send import check_aet, parse_destination

    if (args.dicom_out or args.send) and not args.include_phi:
        return ("--dicom-out and --send need --include-phi: a DICOM object is filed under the "
                "patient's identity, copied from the source image")
    try:
        if args.send:
            parse_destination(args.send)
        check_aet(args.calling_aet, "--calling-aet")
    except ValueError as error:
        return str(error)
    return None


def _print_pacs_outputs(out, settings) -> None:
    from pathlib import Path

    from medig.pacs.export import dicom_objects

    if settings.per_study or settings.dicom_out:
        print(f"study pages: {Path(out) / 'studies'}")
    if settings.dicom_out:
        print(f"dicom: {len(dicom_objects(out))} objects in {Path(out) / 'dicom'}")
    if settings.send:
        print(f"sent: every DICOM object acknowledged by {settings.send} "
              f"(log: {Path(out) / 'dicom' / 'sent.jsonl'})")
def parse_model_args(items: Sequence[str]) -> dict[str, object]:
    """``--model-arg KEY=VALUE ...`` as keyword arguments: each value parsed as a JSON literal
    where possible (``false``, ``5``, ``[1, 2]``, ``"swin_t"``), else kept as the string.

    Raises
    ------
    ValueError
        An item without ``=``, or a key that is not a Python identifier; one line naming it.
    """
    import json

    parsed: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-arg {item!r}: expected KEY=VALUE with KEY a Python "
                             "identifier, e.g. image_size=384")
        try:
            parsed[key] = json.loads(text)
        except ValueError:
            parsed[key] = text
    return parsed


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medig.report import TemplateError, build_report

    if not (Path(args.out) / "results.jsonl").is_file():
        _error(f"{args.out}: no results.jsonl here; run 'medig audit' first")
        return EXIT_USAGE
    try:
        path = build_report(args.out, template=args.template, include_phi=args.include_phi)
        if args.per_study:
            from medig.report.per_study import build_study_pages

            pages = build_study_pages(args.out, template=args.template)
            print(f"study pages: {len(pages)} in {Path(args.out) / 'studies'}")
    except (TemplateError, OSError) as error:
        _error(str(error))
        return EXIT_FAILED
    print(f"report: {path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medig`` command; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="medig: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "audit":
        return _run_audit(args)
    return _run_report(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
