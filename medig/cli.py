# SPDX-License-Identifier: Apache-2.0
"""The ``medig`` command: a thin shell over :func:`medig.audit.run_audit` and the report builder."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medig.audit import AuditSettings

__all__ = ["EXIT_FAILED", "EXIT_NOT_SENT", "EXIT_OK", "EXIT_SOME_FILES_FAILED", "EXIT_USAGE", "main"]

EXIT_OK = 0  #: every input was audited
EXIT_FAILED = 1  #: the audit could not run (model, output folder, no inputs)
EXIT_USAGE = 2  #: bad command line or settings that conflict with the output folder
EXIT_SOME_FILES_FAILED = 3  #: the audit finished but some inputs could not be read or explained
EXIT_NOT_SENT = 4  #: the audit finished but some DICOM objects were not written or acknowledged

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
  {EXIT_USAGE}  usage error (a bad --model-arg or --template, a --target naming no class of the
     model, a group with --output logit), or --out holds an audit with other settings (use --force)
  {EXIT_SOME_FILES_FAILED}  finished, but some files could not be read (see results.jsonl)
  {EXIT_NOT_SENT}  finished, but some DICOM objects were not written (the lines above say why) or
     not acknowledged by the PACS (re-run)
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
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")

    g = p.add_argument_group("model (what it needs besides its weights: no JSON file required)")
    g.add_argument("--model", default="demo",
                   help="demo | demo-shortcut | FILE.pt2 | FILE.ts | torchvision:ARCH | timm:ARCH | monai:NET | "
                        "package.module:factory (default: demo)")
    g.add_argument("--weights", help="weights for torchvision:/timm:/monai:/factory models: "
                                     ".safetensors, a state dict or a training checkpoint "
                                     "(Lightning .ckpt, {'model_state_dict': ...}, ...)")
    g.add_argument("--classes", nargs="+", metavar="NAME", help="class names, in output order")
    g.add_argument("--mean", nargs=3, type=float, metavar=("R", "G", "B"),
                   help="normalisation mean the model was trained with (0-1 or 0-255 units; "
                        "default: JSON beside the weights, else the checkpoint)")
    g.add_argument("--std", nargs=3, type=float, metavar=("R", "G", "B"),
                   help="normalisation standard deviation (as --mean)")
    g.add_argument("--input-size", type=int, metavar="N",
                   help="side of the square input the model was trained on (default: JSON, "
                        "checkpoint, or what the architecture was built for)")
    g.add_argument("--model-arg", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="constructor argument of torchvision:/timm:/monai:/factory models, the "
                        "value parsed as JSON where possible (false, 5, \"swin_t\"), e.g. "
                        "--model-arg image_size=384 drop_rate=0.2")

    g = p.add_argument_group("what is explained, and how precisely")
    g.add_argument("--target", default=None,
                   help="what to explain: pred (each image's predicted class), a class (index or "
                        "name), or a group 'NAME=C1,C2,...' whose summed probability is explained, "
                        "e.g. 'referable DR=2,3,4' (default: the model's declared positive class "
                        "or group, else pred)")
    g.add_argument("--output", choices=("probability", "logit"), default="probability",
                   help="model output explained (default: class probability)")
    g.add_argument("--baseline", nargs="+", default=["black", "blur"], metavar="NAME",
                   help="baseline(s), averaged: " + ", ".join(available_baselines())
                        + " (default: black blur)")
    g.add_argument("--completeness-tol", type=float, default=0.01, metavar="TOL",
                   help="relative completeness tolerance per image (default 0.01)")
    g.add_argument("--completeness-atol", type=float, default=None, metavar="ATOL",
                   help="absolute completeness tolerance, in units of the explained output: an "
                        "image is complete when |delta| <= max(ATOL, TOL * |F(x) - F(x')|) "
                        "(default: 0.001 for --output probability, 1e-6 (float noise) for logit)")
    g.add_argument("--map-tol", type=_map_tol, default=0.05, metavar="TOL",
                   help="most estimated relative L2 error of each map: an image is refined until "
                        "completeness holds and this estimate is within TOL (default 0.05; "
                        "'none': completeness alone)")
    g.add_argument("--max-steps", type=int, default=256, metavar="N",
                   help="most gradient evaluations per image and baseline (default 256)")
    g.add_argument("--size", type=int, default=0, metavar="PX",
                   help="side of the model input in pixels (default: the model's, else 512)")
    g.add_argument("--graham", action="store_true", help="Graham contrast normalisation")
    g.add_argument("--masks", metavar="DIR", help="folder of lesion masks named like the images "
                                   "(default: a masks/ subfolder of INPUT if present)")

    g = p.add_argument_group("can the attributions be trusted? image quality")
    g.add_argument("--sanity-sample", type=int, default=8, metavar="N",
                   help="images of the model-randomisation sanity check (default 8; 0 disables)")
    g.add_argument("--cross-check", nargs="+", default=[], choices=("occlusion",),
                   help="also compare IG with Captum's Occlusion on a patch grid, per image")
    g.add_argument("--no-trust-checks", action="store_true",
                   help="skip the per-image baseline-agreement and faithfulness checks")
    g.add_argument("--quality", choices=("flag", "skip", "off"), default="flag",
                   help="image-quality gate: flag (default) explains every image and marks the "
                        "ungradeable and non-fundus ones; skip leaves them unexplained (status "
                        "'skipped', not an error); off computes no verdict")

    g = p.add_argument_group("outputs")
    g.add_argument("--overlay-scale", choices=("cohort", "image"), default="cohort",
                   help="one colour scale for the whole audit (default) or per image")
    g.add_argument("--percentile", type=float, default=99.5, metavar="P",
                   help="percentile of |attribution| where colours saturate (default 99.5)")
    g.add_argument("--save-attributions", action="store_true",
                   help="also write attributions/<path>.npz")
    g.add_argument("--template", metavar="FILE",
                   help="report template (TOML), default templates/report.toml")
    g.add_argument("--include-phi", action="store_true",
                   help="allow patient identifiers from DICOM in outputs (off by default)")
    g.add_argument("--per-study", action="store_true",
                   help="also write studies/<id>.pdf: one page per study, both eyes side by side")
    g.add_argument("--dicom-out", action="store_true",
                   help="also write DICOM objects under DIR/dicom/: a Secondary Capture of each "
                        "DICOM image's overlay and an Encapsulated PDF of each study's page, in "
                        "the source's study (needs --include-phi; implies --per-study)")
    g.add_argument("--send", metavar="AET@HOST:PORT",
                   help="C-STORE the DICOM objects to this PACS, logging dicom/sent.jsonl; a "
                        "re-run sends only what was not acknowledged (implies --dicom-out)")
    g.add_argument("--calling-aet", default="MEDIG", metavar="AET",
                   help="medig's AE title when sending (default MEDIG)")

    g = p.add_argument_group("running")
    g.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto | cpu | cuda | cuda:K (default auto)")
    g.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="images per batch (default 8)")
    g.add_argument("--workers", type=int, default=2, metavar="N",
                   help="decoding processes (default 2)")
    g.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads per process (default: all cores, shared between the "
                        "processes of a node under torchrun); float32 results are bit-identical "
                        "only between runs with the same thread count")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model for the path passes, once per audit (default: "
                        "only where it was measured to pay; so far nowhere: see bench/RESULTS.md)")
    g.add_argument("--path-dtype", choices=("float32", "float16", "bfloat16"), default=None,
                   help="precision of the path passes (autocast; GPUs): completeness is checked "
                        "in float32 and images missing the tolerance are redone in float32")
    g.add_argument("--force", action="store_true",
                   help="re-audit into an --out folder made with other settings")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def _report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild report.pdf and report.html from an audit folder (no model "
                       "needed)")
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


def _map_tol(text: str) -> float | None:
    """``--map-tol``: a number, or ``none`` for completeness alone."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _error(message: str) -> None:
    print(f"medig: error: {message}", file=sys.stderr)


def _settings(args: argparse.Namespace) -> AuditSettings:
    """The command line as :class:`~medig.audit.AuditSettings` (checked by ``run_audit``)."""
    from medig.audit import AuditSettings

    return AuditSettings(
        model=args.model, weights=args.weights, class_names=tuple(args.classes or ()),
        target=args.target, baselines=tuple(args.baseline),
        completeness_tol=args.completeness_tol, completeness_atol=args.completeness_atol,
        map_tol=args.map_tol, max_steps=args.max_steps, size=args.size, graham=args.graham, output=args.output,
        device=args.device, batch_size=args.batch_size, workers=max(0, args.workers),
        threads=max(0, args.threads), masks=args.masks, include_phi=args.include_phi,
        save_attributions=args.save_attributions, overlay_scale=args.overlay_scale,
        percentile=args.percentile, template=args.template, mean=args.mean, std=args.std,
        input_size=args.input_size, model_args=parse_model_args(args.model_arg),
        quality=args.quality, compile=args.compile,
        path_dtype=None if args.path_dtype == "float32" else args.path_dtype,
        per_study=args.per_study, dicom_out=args.dicom_out, send=args.send,
        calling_aet=args.calling_aet, sanity_sample=args.sanity_sample,
        cross_check=tuple(args.cross_check), trust_checks=not args.no_trust_checks)


def _run_audit(args: argparse.Namespace) -> int:
    from medig.audit import AuditError, SettingsChangedError, run_audit
    from medig.audit.console import summary_lines
    from medig.audit.errors import AuditUsageError
    from medig.io import ImageReadError
    from medig.models import ModelArgumentError, ModelLoadError
    from medig.pacs.errors import DicomIncomplete
    from medig.pacs.steps import pacs_steps

    try:
        settings = _settings(args)
    except ValueError as error:  # a malformed --model-arg
        _error(str(error))
        return EXIT_USAGE
    steps = pacs_steps()  # --dicom-out, --send: each checks and reports its own options
    try:
        summary = run_audit(args.inputs, args.out, settings, force=args.force,
                            progress=not args.quiet, extra_steps=steps)
    except (SettingsChangedError, AuditUsageError, ModelArgumentError) as error:
        _error(str(error))
        return EXIT_USAGE
    except DicomIncomplete as error:  # results and report are written; DICOM output is not
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
    print("\n".join(summary_lines(summary, settings, steps)))
    return EXIT_SOME_FILES_FAILED if summary.errors else EXIT_OK


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
    from medig.report.data import ResultsMismatchError
    from medig.report.html import build_html

    if not (Path(args.out) / "results.jsonl").is_file():
        _error(f"{args.out}: no results.jsonl here; run 'medig audit' first")
        return EXIT_USAGE
    try:
        path = build_report(args.out, template=args.template, include_phi=args.include_phi)
        html = build_html(args.out, template=args.template, include_phi=args.include_phi)
        if args.per_study:
            from medig.report.per_study import build_study_pages

            pages = build_study_pages(args.out, template=args.template)
            print(f"study pages: {len(pages)} in {Path(args.out) / 'studies'}")
    except ResultsMismatchError as error:  # a cut or edited results.jsonl: no report from it
        _error(str(error))
        return EXIT_USAGE
    except TemplateError as error:  # a bad --template is a usage error, as for medig audit
        _error(f"--template: {error}")
        return EXIT_USAGE
    except OSError as error:
        _error(str(error))
        return EXIT_FAILED
    print(f"report: {path}")
    print(f"browser: {html}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medig`` command; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="medig: %(message)s")
    # A path that is not UTF-8 (surrogate escapes) prints as \udcff instead of failing the
    # command after its work is done, as stderr already does.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    if args.command == "audit":
        return _run_audit(args)
    return _run_report(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
