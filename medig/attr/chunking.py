# SPDX-License-Identifier: Apache-2.0
"""Choose how many path points go through the model at once, and back off on out-of-memory."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["auto_chunk_size", "is_out_of_memory", "run_chunked"]

T = TypeVar("T")

#: Activation-plus-gradient memory of a backward pass, as a multiple of the input's size. CNNs on
#: fundus images measured 20-60x (ResNet-50 at 512 px ~55x); 64 keeps the first try safe.
_BYTES_PER_INPUT_BYTE = 64
_MEMORY_FRACTION = 0.5
_CPU_MAX_CHUNK = 64  # CPU throughput stops improving well before this batch size
_CPU_INPUT_BUDGET = 1 << 24  # 16 MiB of path points per pass: 21 at 256 px, 5 at 512 px; larger
# passes cost more per point on CPU (cache; bench/RESULTS.md levers): the example audit ran 10.4 s vs
# 11.2 s at 64 MiB.


def _free_memory(device: torch.device) -> int:
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def auto_chunk_size(sample: Tensor) -> int:
    """Path points per forward/backward pass that fit in free memory for this sample size.

    On CUDA the free memory is read from ``torch.cuda.mem_get_info`` and the chunk rounded down
    to a power of two. On CPU the chunk depends on the image size only: free host memory says
    little about what a pass needs, and a fixed chunk keeps results bit-identical from run to run
    (float32 convolutions round differently with other batch sizes). The estimate is deliberately
    rough: :func:`run_chunked` halves it on out-of-memory.
    """
    point_bytes = sample[0].numel() * sample.element_size()
    if sample.device.type != "cuda":
        return int(max(1, min(_CPU_MAX_CHUNK, _CPU_INPUT_BUDGET // max(point_bytes, 1))))
    budget = int(_free_memory(sample.device) * _MEMORY_FRACTION)
    chunk = max(1, budget // max(point_bytes * _BYTES_PER_INPUT_BYTE, 1))
    return int(min(1 << (chunk.bit_length() - 1), 4096))


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (CUDA or CPU) rather than a bug."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
    )


def run_chunked(n: int, chunk: int, fn: Callable[[int, int], T]) -> tuple[list[T], int]:
    """Call ``fn(start, stop)`` over ``range(n)`` in chunks, halving ``chunk`` on out-of-memory.

    Returns the results in order and the chunk size that worked, so later calls start there.
    """
    results: list[T] = []
    start = 0
    while start < n:
        stop = min(n, start + chunk)
        try:
            results.append(fn(start, stop))
        except Exception as error:  # noqa: BLE001 - re-raised unless it is an OOM we can fix
            if not is_out_of_memory(error) or chunk == 1:
                raise
            chunk = max(1, chunk // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start = stop
    return results, chunk
