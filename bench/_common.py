# SPDX-License-Identifier: Apache-2.0
"""Shared helpers of the benchmarks: machine description, models, inputs, statistics, RESULTS.md.

Every benchmark measures ratios side by side in one run (same model, same images, same device),
interleaved and repeated, and prints a Markdown section. With ``--results bench/RESULTS.md`` the
section replaces the benchmark's own section of that file (and the script says so); without it
nothing is written.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent

#: model key -> (description, input side)
MODELS = {
    "demo": ("medig demo model (DemoNet, shipped weights)", 256),
    "resnet18": ("torchvision ResNet-18, weights=None, 2 classes, ImageNet normalisation folded in", 224),
    "resnet50": ("torchvision ResNet-50, weights=None, 2 classes, ImageNet normalisation folded in", 512),
    "resnet18-trained": ("torchvision ResNet-18 trained a few minutes on synthetic fundus "
                         "(bench/_trained.py), ImageNet normalisation folded in", 128),
    "swin_t": ("torchvision Swin-T, weights=None, 2 classes, ImageNet normalisation folded in", 224),
}


def machine() -> dict[str, str]:
    """CPU model, cores, GPU and library versions, for the RESULTS.md header."""
    import captum
    import numpy
    import PIL
    import torch
    import torchvision

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{cpu}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}, "
               f"{mem_gb:.0f} GiB RAM (shared with other engineers' jobs: load is not controlled)",
        "gpu": gpu,
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, "
                    f"captum {captum.__version__}, torchvision {torchvision.__version__}, "
                    f"numpy {numpy.__version__}, pillow {PIL.__version__}",
    }


def header(title: str, command: str, info: dict[str, str]) -> list[str]:
    return [f"## {title}", "", f"- command: `{command}`", f"- date: {info['date']}",
            f"- machine: {info['cpu']}; GPU: {info['gpu']}", f"- versions: {info['versions']}", ""]


def build_model(key: str, output: str = "probability"):
    """The audited function: the model with softmax (``probability``) or raw ``logit`` output."""
    import torch
    import torchvision
    from torch import nn

    import medig
    from medig.attr import with_normalization

    if key == "demo":
        model = medig.load_model("demo").model
    elif key == "resnet18-trained":
        from _trained import trained_model

        model, _accuracy = trained_model()
    else:
        torch.manual_seed(0)
        arch = getattr(torchvision.models, key)(weights=None, num_classes=2)
        model = with_normalization(arch.eval(), *IMAGENET)
    model.eval()

    class Scored(nn.Module):
        def __init__(self, m: nn.Module, softmax: bool) -> None:
            super().__init__()
            self.model, self.softmax = m, softmax

        def forward(self, x):
            y = self.model(x)
            return torch.softmax(y, dim=1) if self.softmax else y

    return Scored(model, output == "probability").eval()


def images(n: int, size: int, seed: int = 0):
    """``n`` synthetic fundus photographs, float32 in [0, 1]."""
    from medig.synthetic import generate

    return generate(n, size, seed=seed)[0].float() / 255.0


def maxrss_bytes(who: int = resource.RUSAGE_SELF) -> int:
    return resource.getrusage(who).ru_maxrss * 1024  # kilobytes on Linux


def run_worker(args: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``python <args>`` in a fresh process; its last stdout line is a JSON result."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False,
                          timeout=timeout, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"rc={proc.returncode}: {proc.stderr.strip()[-800:]}"}
    return json.loads(lines[-1])


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """``median [min-max]`` of a list of measurements."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3g} (1 rep)"
    return f"{med(values):.3g} [{min(values):.3g}-{max(values):.3g}]"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def write_section(results: str | None, title: str, lines: list[str]) -> None:
    """Print the section; with ``results`` also replace ``## title`` in that Markdown file."""
    text = "\n".join(lines).rstrip() + "\n"
    print(text)
    if not results:
        return
    path = Path(results)
    old = path.read_text(encoding="utf-8") if path.is_file() else "# medig benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(old):
        new = pattern.sub(lambda _m: text + "\n", old, count=1)
    else:
        new = old.rstrip() + "\n\n" + text
    path.write_text(new, encoding="utf-8")
    print(f"[wrote section '## {title}' of {path}]")


def parse_or_work(ap: argparse.ArgumentParser,
                  worker: Callable[[dict], dict]) -> argparse.Namespace | None:
    """``ap.parse_args()`` with ``--results`` and the hidden ``--worker`` added. In a measured
    subprocess (``--worker SPEC``, see :func:`run_worker`) it runs ``worker(SPEC)``, prints its JSON
    result and returns None; otherwise it returns the parsed arguments."""
    ap.add_argument("--results", help="also replace this benchmark's section in this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return None
    return args
