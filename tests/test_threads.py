import subprocess
import sys
import time

import torch

from workbench import threads


def _sampler(cores: int, readings) -> threads._Sampler:
    sampler = threads._Sampler.__new__(threads._Sampler)  # no sampling thread: readings given by the test
    sampler.cores, sampler.available = {f"cpu{c}" for c in range(cores)}, True
    sampler.readings = readings
    return sampler


def test_free_cores_leave_out_the_time_other_processes_used():
    # (wall, busy without niced work, niced work, our own CPU time), one second apart
    quiet = _sampler(2, [(0.0, 10.0, 0.0, 5.0), (1.0, 11.9, 0.0, 6.9)])  # all of the busy time was ours
    assert quiet.free_cores() == 2
    busy = _sampler(2, [(0.0, 10.0, 0.0, 5.0), (1.0, 11.9, 0.0, 5.95)])  # another process took about one core
    assert busy.free_cores() == 1
    niced = _sampler(2, [(0.0, 10.0, 3.0, 5.0), (1.0, 10.0, 4.0, 6.0)])  # our own (niced) time is ours
    assert niced.free_cores() == 2
    other_niced = _sampler(2, [(0.0, 10.0, 3.0, 5.0), (1.0, 10.0, 4.0, 5.0)])  # another niced process: busy too
    assert other_niced.free_cores() == 1
    crowded = _sampler(2, [(0.0, 0.0, 0.0, 0.0), (1.0, 2.0, 0.0, 0.0)])
    assert crowded.free_cores() == 1  # never fewer than one thread
    assert _sampler(2, [(0.0, 0.0, 0.0, 0.0)]).free_cores() == 2  # no interval yet


def test_use_free_cores_follows_a_real_neighbour():
    cores = len(threads._Sampler().cores)
    threads.use_free_cores()  # starts the sampling, as the first training step does
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(2.5)  # the sampler needs about a second of readings
        busy = threads.use_free_cores()
        assert busy == max(1, cores - 1) and torch.get_num_threads() == busy
    finally:
        neighbour.kill()
        neighbour.wait()
