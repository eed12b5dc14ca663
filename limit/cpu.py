"""How many CPU threads torch should use: OMP_NUM_THREADS when set, else the CPUs this process may use.

In a container `os.cpu_count()` reports the node's cores; the cgroup quota is what the pod really gets.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def available_cpus() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"
    if quota.is_file():
        limit, period = quota.read_text().split()[:2]
        if limit != "max":
            cpus = min(cpus, max(1, math.ceil(int(limit) / int(period))))
    return cpus


def configure_torch_threads() -> int:
    import torch

    threads = int(os.environ.get("OMP_NUM_THREADS") or available_cpus())
    torch.set_num_threads(threads)
    return threads
