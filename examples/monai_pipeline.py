# SPDX-License-Identifier: Apache-2.0
"""Integrated Gradients audit inside a MONAI pipeline, in two flavours.

1. Transforms: ``LoadImaged`` (PIL and pydicom readers) -> ``EnsureChannelFirstd`` ->
   ``PreprocessFundusd`` -> ``Dataset``/``DataLoader`` batches -> ``ComputeIntegratedGradientsd``
   on each batch -> heat maps blended with ``monai.visualize.blend_images``.
2. Engine: the same loader through a ``SupervisedEvaluator`` with ``IntegratedGradientsHandler``,
   then ``medig.report.build_report`` turns the evaluation into the audit PDF.

Run ``python examples/monai_pipeline.py [--data examples/fundus] [--out monai-out]``; without
images in ``--data`` a few synthetic photographs are generated. Takes well under a minute on a CPU.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pydicom
import torch
from monai.data import DataLoader, Dataset, PILReader, PydicomReader, is_supported_format
from monai.engines import SupervisedEvaluator
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from monai.visualize import blend_images
from PIL import Image

import medig
from medig.monai import (
    ComputeIntegratedGradientsd,
    IntegratedGradientsHandler,
    PreprocessFundusd,
    minmax_normalizer,
)
from medig.report import build_report
from medig.visualize import attribution_map, save_png

SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm"}


class TiffPILReader(PILReader):
    """MONAI's PILReader claims PNG/JPEG/BMP only; Pillow reads TIFF too (ITK is not a dependency)."""

    def verify_suffix(self, filename) -> bool:  # noqa: ANN001 - MONAI's signature
        return is_supported_format(filename, ["png", "jpg", "jpeg", "bmp", "tif", "tiff"])


def _single_frame(path: Path) -> bool:
    # MONAI's PydicomReader stacks frames into a spatial axis; `medig audit` (medig.io.read_frames)
    # is the tool for multi-frame DICOM, so the MONAI example leaves those files out.
    if path.suffix.lower() not in (".dcm", ".dicom"):
        return True
    frames = pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1)
    return int(frames or 1) == 1


def find_or_make_images(data: Path, out: Path, n: int = 6) -> list[Path]:
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in SUFFIXES
                   and "masks" not in p.parts) if data.is_dir() else []
    single = [p for p in files if _single_frame(p)]
    if len(single) < len(files):
        print(f"skipping {len(files) - len(single)} multi-frame DICOM file(s): use `medig audit`")
    if single:
        return single
    from medig.synthetic import generate

    images, _, _ = generate(n, size=320, seed=0)
    folder = out / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"synthetic_{k}.png")
    return sorted(folder.glob("*.png"))


def main(argv: list[str] | None = None) -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=here / "fundus")
    parser.add_argument("--out", type=Path, default=Path("monai-out"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=128)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.manual_seed(0)

    loaded = medig.load_model("demo")
    model, classes = loaded
    size = loaded.input_size or 256
    files = find_or_make_images(args.data, args.out)

    # MONAI picks the last registered reader that accepts a file's suffix. Both readers return 2-D
    # images with spatial axes (W, H): reverse_indexing=True turns them into photographs as displayed.
    load = LoadImaged("image", image_only=True)
    load.register(PydicomReader())
    load.register(TiffPILReader())
    preprocess = Compose([
        load,
        # Both readers put colour last; PydicomReader does not record it, so name the axis.
        EnsureChannelFirstd("image", channel_dim=-1),
        PreprocessFundusd("image", size=size, reverse_indexing=True),
    ])
    dataset = Dataset([{"image": str(f)} for f in files], preprocess)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=2)

    # 1. Transforms on collated batches (in the main process, where the model and a GPU would live).
    explain = ComputeIntegratedGradientsd("image", model, baselines="black",
                                          completeness_tol=0.01, max_steps=args.max_steps)
    blend_dir = args.out / "blend"
    for batch in loader:
        batch = explain(batch)
        stats = batch["image_ig_stats"]
        heat = minmax_normalizer(attribution_map(batch["image_ig"].as_tensor()))
        for i, name in enumerate(batch["image"].meta["filename_or_obj"]):
            blended = blend_images(batch["image"][i].as_tensor(), heat[i], alpha=0.5, cmap="jet")
            save_png(blend_dir / f"{Path(name).stem}.png", blended.clamp(0, 1))
            print(f"{Path(name).name}: {classes[int(stats['target'][i])]}, "
                  f"F(x)={float(stats['score'][i]):.3f}, F(x')={float(stats['baseline_score'][i]):.3f}, "
                  f"relative error {float(stats['relative_error'][i]):.2%} "
                  f"in {int(stats['n_steps'][i])} steps"
                  f"{'' if bool(stats['converged'][i]) else ' (FLAGGED)'}")

    # 2. The same data through a MONAI evaluator, audited by the handler, then the PDF report.
    audit_dir = args.out / "audit"
    handler = IntegratedGradientsHandler(audit_dir, classes, baselines="black",
                                         completeness_tol=0.01, max_steps=args.max_steps,
                                         model_spec="demo")
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader,
                                    network=model)
    handler.attach(evaluator)
    evaluator.run()
    pdf = build_report(audit_dir)
    print(f"blended heat maps in {blend_dir}, audit in {audit_dir}, report {pdf} "
          f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
