"""Shared by the benchmark scripts, with no heavy imports (children measure their own RSS)."""

from __future__ import annotations

import os
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the
    parent across fork and exec, so a child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def machine_cpu_secs() -> float:
    """CPU seconds the whole machine has spent (user, nice, system, irq, softirq): the
    database server's processes and any workers too, not only this one."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(fields[i]) for i in (0, 1, 2, 5, 6))
    return busy / os.sysconf("SC_CLK_TCK")
