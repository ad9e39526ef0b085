# SPDX-License-Identifier: Apache-2.0
"""Names of the path passes' precision (``medig audit --path-dtype``) and their torch dtypes."""
from __future__ import annotations

import torch

__all__ = ["PATH_DTYPES", "path_dtype"]

#: ``float32``: full precision (default). ``float16``/``bfloat16``: the path passes run under
#: ``torch.autocast``; completeness is checked in float32 and images that miss the tolerance are
#: integrated again in float32 (see :mod:`medig.attr.adaptive`). Pays on GPUs with tensor cores;
#: on CPUs reduced precision is usually slower.
PATH_DTYPES: dict[str, torch.dtype | None] = {
    "float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


def path_dtype(name: str | None) -> torch.dtype | None:
    """The autocast dtype for ``name`` (None and ``"float32"``: no autocast)."""
    if name is None:
        return None
    try:
        return PATH_DTYPES[name]
    except KeyError:
        raise ValueError(f"path dtype must be one of {', '.join(PATH_DTYPES)}, got {name!r}") from None
