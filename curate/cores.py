"""How many CPU cores this process may use: the affinity mask, not the machine's core count.

A Slurm step, `taskset` or a container's cpuset gives a process fewer cores than the machine has;
every "0 = all cores" setting (torch threads, loader and statistics workers) means these.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores in this process's CPU affinity mask (at least 1; the core count where the platform
    has no affinity mask)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)
