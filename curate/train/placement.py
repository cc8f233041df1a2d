"""Where training runs: this process's rank among torchrun's processes, its device, its share of
the members and its CPU threads. Without torchrun there is one process of rank 0."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from curate.cores import usable_cores
from curate.errors import CurateError


@dataclass(frozen=True)
class Placement:
    world: int  # processes (torchrun's WORLD_SIZE)
    rank: int
    local_rank: int  # rank on this machine: picks the GPU
    device: torch.device

    def members(self, count: int) -> list[int]:
        """The members this rank trains: every world-th, starting at its rank."""
        return [m for m in range(count) if m % self.world == self.rank]

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def rank() -> int:
    """This process's torchrun rank (0 without torchrun), before joining any process group."""
    return int(os.environ.get("RANK", "0"))


def place(device: str, threads: int) -> Placement:
    """Join torchrun's process group when there is one, pick the device and set torch's threads.

    device : "cpu", "cuda" or "auto" (CUDA when visible). threads : 0 = the cores divided by ranks.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    dev = _device(device, local)
    torch.set_num_threads(threads or max(1, usable_cores() // world))
    return Placement(world, rank(), local, dev)


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise CurateError(
                "train.device = cuda but no CUDA device is visible; use --device cpu or auto"
            )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")  # the recipe's choices are cpu, cuda and auto
