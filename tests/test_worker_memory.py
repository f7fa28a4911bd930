"""A worker's memory: glibc's malloc with a fixed mmap threshold (launcher.MMAP_THRESHOLD), so that big blocks go
back to the system when freed and trial after trial of variable-length batches does not grow the heap
(benchmarks/worker_memory.py); a threshold the user set is kept, and every trial records what its worker ran with."""

from __future__ import annotations

import json
import subprocess
import sys

from glue_bench.sweeping import launcher


def test_workers_run_with_a_fixed_mmap_threshold_unless_one_is_set(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert launcher.worker_env(0, 2, [])["MALLOC_MMAP_THRESHOLD_"] == "4194304"
    assert launcher.worker_env(1, 2, ["0"])["MALLOC_MMAP_THRESHOLD_"] == "4194304"  # on a GPU machine too
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert launcher.worker_env(0, 2, [])["MALLOC_MMAP_THRESHOLD_"] == "131072"


def test_a_trial_records_what_malloc_its_worker_ran_with(monkeypatch):
    probe = "import json; from glue_bench.sweeping.trial import environment; print(json.dumps(environment('cpu')))"
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    env = launcher.worker_env(0, 1, [])
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    recorded = json.loads(out.stdout.splitlines()[-1])
    assert (recorded["allocator"], recorded["malloc_mmap_threshold"]) == ("glibc", "4194304")
