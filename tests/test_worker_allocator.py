"""A worker's allocator: jemalloc where it is installed (a worker's memory stays flat under it; glibc's malloc grows
with trial after trial of variable-length batches: benchmarks/worker_memory.py), glibc's on request, and every
trial records which it ran under."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from glue_bench.sweeping import launcher


def test_workers_preload_jemalloc_where_it_is_installed(monkeypatch):
    monkeypatch.setattr(launcher, "JEMALLOC", "libjemalloc.so.2")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("GLUE_BENCH_ALLOCATOR", raising=False)
    assert launcher.worker_env(0, 2, [])["LD_PRELOAD"] == "libjemalloc.so.2"
    monkeypatch.setenv("LD_PRELOAD", "libother.so")
    assert launcher.worker_env(0, 2, [])["LD_PRELOAD"] == "libjemalloc.so.2 libother.so"  # theirs kept, after it
    monkeypatch.setenv("LD_PRELOAD", "/opt/lib/libjemalloc.so.2")
    assert launcher.worker_env(0, 2, [])["LD_PRELOAD"] == "/opt/lib/libjemalloc.so.2"  # preloaded already: once
    monkeypatch.setenv("GLUE_BENCH_ALLOCATOR", "glibc")
    monkeypatch.delenv("LD_PRELOAD")
    assert "LD_PRELOAD" not in launcher.worker_env(0, 2, [])
    monkeypatch.delenv("GLUE_BENCH_ALLOCATOR")
    monkeypatch.setattr(launcher, "JEMALLOC", None)  # not installed
    assert "LD_PRELOAD" not in launcher.worker_env(0, 2, [])


def test_a_trial_records_the_allocator_it_ran_under(monkeypatch):
    """A worker's environment as the launcher makes it, with and without GLUE_BENCH_ALLOCATOR=glibc: the trial's env
    says which allocator ran."""
    if launcher.JEMALLOC is None:
        pytest.skip("jemalloc is not installed here (apt-get install libjemalloc2)")
    probe = "import json; from glue_bench.sweeping.trial import environment; print(json.dumps(environment('cpu')))"
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    seen = {}
    for allocator in ("jemalloc", "glibc"):
        monkeypatch.setenv("GLUE_BENCH_ALLOCATOR", allocator)
        env = launcher.worker_env(0, 1, [])
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        seen[allocator] = json.loads(out.stdout.splitlines()[-1])["allocator"]
    assert seen == {"jemalloc": "jemalloc", "glibc": "glibc"}
