# SPDX-License-Identifier: Apache-2.0
"""Running one audit across processes with ``torchrun`` (``torch.distributed``), GPUs or CPUs.

Every rank takes a disjoint, deterministic share of the inputs balanced by file size (a proxy for
pixels and decode time), audits it into the shared work store, then waits at a barrier; rank 0
merges everything into the same outputs as a single-process audit.
"""
from __future__ import annotations

import datetime
import heapq
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["DistContext", "balanced_shares", "barrier", "broadcast", "init_distributed",
           "shutdown"]

T = TypeVar("T")


@dataclass
class DistContext:
    """This process's place in the job (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    group: Any = None  # a gloo group for barriers, also when the main backend is NCCL

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str, timeout_s: float = 1800.0) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment (if any).

    NCCL is used between GPUs, gloo between CPU processes; a separate gloo group serves the
    monitored barrier, which names ranks that do not arrive.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend,
                                timeout=datetime.timedelta(seconds=timeout_s))
    group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    return DistContext(rank, world, local_rank, local_world, group)


def barrier(ctx: DistContext, timeout_s: float) -> None:
    """Wait for every rank; after ``timeout_s`` raise an error that names the missing ranks."""
    if not ctx.distributed:
        return
    try:
        dist.monitored_barrier(group=ctx.group, timeout=datetime.timedelta(seconds=timeout_s),
                               wait_all_ranks=True)
    except RuntimeError as error:
        raise RuntimeError(f"rank {ctx.rank}: barrier failed: {' '.join(str(error).split())}") \
            from None


def broadcast(ctx: DistContext, value: T) -> T:
    """Rank 0's ``value`` on every rank (a small picklable object)."""
    if not ctx.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=ctx.group)
    return box[0]


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def balanced_shares(weights: Sequence[float], world_size: int) -> list[list[int]]:
    """Split item indices into ``world_size`` shares of nearly equal total weight.

    Longest-processing-time-first: the heaviest remaining item goes to the lightest share, ties
    broken by index and rank, so every rank computes the same split without communicating. Each
    share keeps its items in input order.
    """
    shares: list[list[int]] = [[] for _ in range(world_size)]
    heap = [(0.0, r) for r in range(world_size)]
    for index in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        load, rank = heapq.heappop(heap)
        shares[rank].append(index)
        heapq.heappush(heap, (load + float(weights[index]), rank))
    return [sorted(s) for s in shares]


def device_for(ctx: DistContext, requested: str) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when CUDA is asked for or available."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    if requested.startswith("cuda:"):
        return torch.device(requested)
    return torch.device("cuda", ctx.local_rank % torch.cuda.device_count())
