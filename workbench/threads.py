"""Training's thread policy: compute on the cores that other processes leave free, re-measured at every step.

PyTorch's intra-op threads wait for each other at the end of every parallel region. When another process holds
one of our cores, each region waits for a descheduled thread and the work can collapse (a chat turn beside
another decoding job: 36x slower with 2 threads). So before each training step, `use_free_cores` sets the calling
thread's torch threads to the cores that other processes did not use over the last second (at least 1), as read
from `/proc/stat` by a sampler thread twice a second. The app's background training also runs niced, so a chat
turn takes its cores at once. (The chat engine itself always runs on one thread: see `engine.ENGINE_THREADS`.)
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

import torch

SAMPLE_EVERY_S = 0.5
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class _Sampler:
    """Readings of CPU time on this process's cores: (wall, busy without niced work, niced work, own time)."""

    def __init__(self):
        self.cores = {f"cpu{c}" for c in os.sched_getaffinity(0)} if hasattr(os, "sched_getaffinity") else set()
        self.readings: deque = deque(maxlen=3)
        first = self._read()
        self.available = first is not None and bool(self.cores)
        if self.available:
            self.readings.append(first)
            threading.Thread(target=self._run, name="cpu-share", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(SAMPLE_EVERY_S)
            self.readings.append(self._read())

    def _read(self) -> tuple[float, float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                lines = stat.read().splitlines()
        except OSError:
            return None
        busy = niced = 0
        for line in lines:
            fields = line.split()
            if fields and fields[0] in self.cores:
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
                busy += user + system + irq + softirq + steal
                niced += nice
        return time.monotonic(), busy / _TICKS, niced / _TICKS, time.process_time()

    def free_cores(self) -> int:
        """Cores not used by other processes between the oldest and the newest reading (about the last second);
        niced processes count too (the training process is niced itself)."""
        if len(self.readings) < 2:
            return len(self.cores)
        (t0, busy0, niced0, own0), (t1, busy1, niced1, own1) = self.readings[0], self.readings[-1]
        others = (busy1 - busy0) + (niced1 - niced0) - (own1 - own0)
        return max(1, min(len(self.cores), round(len(self.cores) - max(0.0, others) / (t1 - t0))))


_sampler: _Sampler | None = None
_sampler_lock = threading.Lock()


def use_free_cores() -> int:
    """Set the calling thread's torch threads to the cores free now (see the module docstring); returns the count.

    Where `/proc/stat` does not exist (not Linux), torch's own setting stays."""
    global _sampler
    with _sampler_lock:
        if _sampler is None:
            _sampler = _Sampler()
    if not _sampler.available:
        return torch.get_num_threads()
    threads = _sampler.free_cores()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
