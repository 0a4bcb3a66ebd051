"""The machine a run trains on: its devices, its CPU (model and last-level cache: the planner's batch budget) and
the memory free now. Read by the run planner and stamped into every run record."""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path

import torch

log = logging.getLogger("salrepro")


def last_level_cache_bytes() -> int | None:
    """The size of the CPU's last-level cache (Linux sysfs), None where unknown."""
    best = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level, size = int((index / "level").read_text()), (index / "size").read_text().strip()
            units = {"K": 2**10, "M": 2**20, "G": 2**30}
            nbytes = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        except (OSError, ValueError):
            continue
        if best is None or level > best[0]:
            best = (level, nbytes)
    return best[1] if best else None


def cpu_batch_bytes(cache: int | None = None) -> float:
    """Weights trained together in one CPU batch: half the last-level cache, between 16 and 32 MB.
    A batch whose weights outgrow the cache turns cache-hot single runs into DRAM-bound ones: on an
    AMD EPYC with 32 MB of L3, 25 MNIST-sized SAL nets batched were slower than one at a time (16 MB
    was best there). A virtual machine reports its host's cache, not the share it gets: an Intel Xeon
    VM reporting 504 MB of L3 streams one thread's in-place add at 42 GB/s up to 32 MB and at 22 GB/s
    from 128 MB, and there, with two workers side by side, one epoch of the MNIST Table 2 grid took
    28.0 and 28.1 s in batches of 32 MB against 39.0 and 38.4 s in batches of 256 MB (alternated; 16 MB:
    37.4-38.3 s against 47.3-49.2 s for 256 MB in a slower state of the same machine, 64 and 128 MB
    as slow as 256). (Before the workers, in one process with two threads, another such VM ran the
    grid faster in batches of 115 MB than of 16 MB.)"""
    cache = last_level_cache_bytes() if cache is None else cache
    return float(min(32e6, max(16e6, (cache or 32 * 2**20) / 2)))


class SetupError(ValueError):
    """A device or a run store that cannot be used; the message names it and says what can."""


def devices_here() -> list[str]:
    """The device names this machine can train on."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(n)] if n else [])


def resolve_device(device: str | None) -> torch.device:
    """`auto` (or None): CUDA when present, else CPU; 'cpu', 'cuda', 'cuda:N' when this machine has it.
    Anything else raises SetupError naming the devices that exist here."""
    if isinstance(device, torch.device):  # a device already resolved: as its name ('cpu', 'cuda:0')
        device = str(device)
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = devices_here()
    if device not in here:
        kind = "no such device on this machine" if str(device).startswith("cuda") else "not a device salrepro trains on"
        raise SetupError(f"device {device!r}: {kind}; devices here: {', '.join(here)}")
    return torch.device(device)


def available_bytes() -> float | None:
    """Memory free for a new allocation now (Linux: MemAvailable of /proc/meminfo), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def describe_device(dev: torch.device) -> str:
    """The machine a run trained on, as its record names it: the GPU, or the CPU's model and threads."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    n = torch.get_num_threads()
    return f"cpu ({', '.join(filter(None, (cpu_model(), platform.machine())))}, {n} thread{'s' if n != 1 else ''})"


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name where the system tells it (Linux's /proc/cpuinfo), else ''."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


