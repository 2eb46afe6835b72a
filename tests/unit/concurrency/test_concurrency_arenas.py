"""One malloc arena for the writer's threads (glibc only)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc",
                                reason="malloc arenas are glibc's")

# Threads that allocate at the same time, then glibc's own report of its arenas.
SCRIPT = """
import ctypes, sys, threading
from nexus_writer_service.tuning import use_one_malloc_arena
print(use_one_malloc_arena() if sys.argv[1] == "one" else None, flush=True)
barrier = threading.Barrier(4)
def allocate():
    barrier.wait()
    blocks = [bytearray(100_000) for _ in range(200)]
    barrier.wait()
threads = [threading.Thread(target=allocate) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL(None).malloc_stats()
"""


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, timeout=60, env=dict(environ, **env), check=True)
    return done.stdout.strip(), done.stderr.count("Arena ")


def test_threads_share_one_arena_once_asked():
    assert _arenas("default")[1] > 1  # what the test would see without it
    assert _arenas("one") == ("True", 1)


def test_malloc_arena_max_in_the_environment_has_the_last_word():
    applied, arenas = _arenas("one", MALLOC_ARENA_MAX="2")
    assert applied == "False" and arenas == 2


# Blocks of about a MiB, six alive at a time (as a writer's received payloads and
# chunks are), then the page faults they took.
CHURN = """
import collections, resource, sys
import numpy as np
from nexus_writer_service.tuning import use_malloc_thresholds
print(use_malloc_thresholds() if sys.argv[1] == "fixed" else None, flush=True)
rng = np.random.default_rng(0)
held = collections.deque()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(400):
    block = np.empty(int(rng.integers(600_000, 1_100_000)), np.uint8)
    block[:] = 1
    held.append(block)
    if len(held) > 6:
        held.popleft()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, flush=True)
"""


def _churn(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True,
                          text=True, timeout=60, env=dict(environ, **env), check=True)
    applied, faults = done.stdout.split()
    return applied, int(faults)


def test_fixed_malloc_thresholds_keep_freed_blocks_for_the_next_ones():
    _, moving = _churn("default")
    applied, fixed = _churn("fixed")
    assert applied == "True"
    assert fixed < moving / 2, (fixed, moving)  # about 2,900 against 9,800 here


def test_malloc_thresholds_in_the_environment_have_the_last_word():
    applied, _ = _churn("fixed", MALLOC_TRIM_THRESHOLD_="1048576")
    assert applied == "False"
