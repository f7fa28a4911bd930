"""Issue 7: bad input and numerical faults, through the real command line.

Every mistake a user can make ends in exactly one stderr line that names the file/key/value and the fix,
exit code 2, no traceback, and the trials already recorded in the storage stay byte for byte as they were.
A run whose loss becomes NaN stops, exits 1 and is recorded as a failed trial naming the first bad step.

Each damaged file is a copy of a real GLUE file (../shared/glue_data), damaged as a user or a download would.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest

from glue_bench.cli import main

MODEL = ["--model", "random:L-2_H-128"]
QUICK = ["--batch-size", "32", "--lr", "1e-4", "--epochs", "1", "--max-train-samples", "32", "--no-progress"]
REPLACE = "replace it with the original GLUE file"
LOCAL_LAYOUTS = (
    "a folder in the original glue_data layout (CoLA/train.tsv, …) or in the Hub's parquet layout "
    "(cola/train-00000-of-00001.parquet, …)"
)
HUB_OFFLINE = (
    "cannot load nyu-mll/glue/wnli from the Hugging Face Hub (Couldn't reach 'nyu-mll/glue' on the Hub "
    f"(OfflineModeIsEnabled)); point --data (or GLUE_BENCH_DATA) at a local copy: {LOCAL_LAYOUTS}"
)


# --- damaging copies of real files -----------------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines), encoding="utf-8")


def cut_bytes(relative: str, keep: Callable[[int], int]):
    """Truncate a file as an interrupted download does: keep the first keep(size) bytes."""

    def damage(data: Path):
        path = data / relative
        content = path.read_bytes()
        path.write_bytes(content[: keep(len(content))])

    return damage


def set_field(relative: str, line: int, column: int, value: str):
    def damage(data: Path):
        lines = _lines(data / relative)
        fields = lines[line - 1].split("\t")
        fields[column] = value
        lines[line - 1] = "\t".join(fields)
        _write(data / relative, lines)

    return damage


def tabs_to_commas(relative: str):
    def damage(data: Path):
        path = data / relative
        path.write_text(path.read_text(encoding="utf-8").replace("\t", ","), encoding="utf-8")

    return damage


def drop_column(relative: str, column: int):
    def damage(data: Path):
        lines = _lines(data / relative)
        _write(
            data / relative,
            ["\t".join(f for i, f in enumerate(line.split("\t")) if i != column) if line else line for line in lines],
        )

    return damage


def latin1_line(relative: str, line: int):
    """A spreadsheet's re-save: one line with 'café' as Latin-1 bytes, the rest UTF-8."""

    def damage(data: Path):
        path = data / relative
        raw = path.read_bytes().split(b"\n")
        raw[line - 1] = raw[line - 1] + " café".encode("latin-1")
        path.write_bytes(b"\n".join(raw))

    return damage


def keep_lines(relative: str, count: int):
    def damage(data: Path):
        _write(data / relative, _lines(data / relative)[:count] + [""])

    return damage


def copy_as(source: str, target: str):
    def damage(data: Path):
        shutil.copy(data / source, data / target)

    return damage


def task_toml(name: str, old: str, new: str):
    """A user's own task file: the shipped wnli.toml with one mistake, written beside the data copy."""

    def damage(data: Path):
        text = (Path(__file__).resolve().parent.parent / "tasks" / "wnli.toml").read_text()
        assert text.count(old) >= 1, old
        text = text.replace('name = "wnli"', f'name = "{name}"').replace(old, new, 1)
        (data.parent / f"{name}.toml").write_text(text)

    return damage


# --- the cases ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One bad input. In args and expected: {data} is the damaged copy, {shared} the real data,
    {tmp} the test's folder, {storage} the storage that already holds a recorded trial."""

    what: str
    args: list[str]
    expected: str  # the whole stderr
    damage: Callable[[Path], None] | None = None
    task: list[str] = field(default_factory=lambda: ["--task", "wnli"])


CASES = [
    Case(
        "truncated TSV (cut mid-row)",
        ["--data", "{data}"],
        f"glue-bench: error: {{data}}/WNLI/train.tsv: line 636 has 3 of 4 tab-separated fields: the file is cut "
        f"short or damaged; {REPLACE}",
        cut_bytes("WNLI/train.tsv", lambda size: size - 30),
    ),
    Case(
        "truncated TSV (cut half-way)",
        ["--data", "{data}"],
        "glue-bench: error: {data}/CoLA/train.tsv: 4150 rows, but cola train has 8551 in the GLUE release; "
        "the file is truncated or from another release: replace it with the original",
        cut_bytes("CoLA/train.tsv", lambda size: size // 2),
        task=["--task", "cola"],
    ),
    Case(
        "wrong delimiter (commas), file with a header",
        ["--data", "{data}"],
        "glue-bench: error: {data}/WNLI/train.tsv: no 'sentence1' column for the first text; the file has one "
        "column 'index,sentence1,sentence2,label' (is it tab-separated?)",
        tabs_to_commas("WNLI/train.tsv"),
    ),
    Case(
        "wrong delimiter (commas), file without a header",
        ["--data", "{data}"],
        "glue-bench: error: {data}/CoLA/dev.tsv: the first text is column 3 (0-based), but the file has only "
        "1 column; is it tab-separated?",
        tabs_to_commas("CoLA/dev.tsv"),
        task=["--task", "cola"],
    ),
    Case(
        "renamed column (label → labl)",
        ["--data", "{data}"],
        "glue-bench: error: {data}/WNLI/dev.tsv: no 'label' column for the label; did you mean 'labl'? the file "
        "has index, sentence1, sentence2, labl",
        set_field("WNLI/dev.tsv", 1, 3, "labl"),
    ),
    Case(
        "missing column (sentence2 dropped)",
        ["--data", "{data}"],
        "glue-bench: error: {data}/RTE/dev.tsv: no 'sentence2' column for the second text; did you mean "
        "'sentence1'? the file has index, sentence1, label",
        drop_column("RTE/dev.tsv", 2),
        task=["--task", "rte"],
    ),
    Case(
        "label outside the label set",
        ["--data", "{data}"],
        "glue-bench: error: {data}/WNLI/train.tsv: line 6: label 'maybe' is not one of wnli's labels ['0', '1']",
        set_field("WNLI/train.tsv", 6, 3, "maybe"),
    ),
    Case(
        "label outside the label set (no header)",
        ["--data", "{data}"],
        "glue-bench: error: {data}/CoLA/dev.tsv: line 4: label '2' is not one of cola's labels ['0', '1']",
        set_field("CoLA/dev.tsv", 4, 1, "2"),
        task=["--task", "cola"],
    ),
    Case(
        "non-UTF-8 bytes",
        ["--data", "{data}"],
        "glue-bench: error: {data}/WNLI/train.tsv: line 8: not UTF-8 text (invalid continuation byte); "
        "re-save the file as UTF-8",
        latin1_line("WNLI/train.tsv", 8),
    ),
    Case(
        "empty file",
        ["--data", "{data}"],
        f"glue-bench: error: {{data}}/WNLI/dev.tsv: the file is empty; {REPLACE}",
        keep_lines("WNLI/dev.tsv", 0),
    ),
    Case(
        "header only",
        ["--data", "{data}"],
        "glue-bench: error: {data}/WNLI/dev.tsv: 0 rows, but wnli validation has 71 in the GLUE release; "
        "the file is truncated or from another release: replace it with the original",
        keep_lines("WNLI/dev.tsv", 1),
    ),
    Case(
        "test file that carries labels (dev.tsv copied as test.tsv)",
        ["--data", "{data}"],
        "glue-bench: error: {data}/WNLI/test.tsv: a test file must carry no labels, but it has a 'label' column; "
        "is it a train or dev file under the test file's name?",
        copy_as("WNLI/dev.tsv", "WNLI/test.tsv"),
    ),
    Case(
        "row count differs (10 rows dropped)",
        ["--data", "{data}"],
        "glue-bench: error: {data}/WNLI/dev.tsv: 61 rows, but wnli validation has 71 in the GLUE release; "
        "the file is truncated or from another release: replace it with the original",
        keep_lines("WNLI/dev.tsv", 62),
    ),
    Case(
        "--data folder that does not exist",
        ["--data", "{tmp}/no-such-folder"],
        f"glue-bench: error: --data {{tmp}}/no-such-folder: no such folder; pass 'hub' or {LOCAL_LAYOUTS}",
    ),
    Case(
        "unknown task",
        ["--data", "{shared}"],
        "glue-bench: error: unknown task 'wnlii': did you mean 'wnli'? known tasks: ax, cola, mnli, mrpc, qnli, "
        "qqp, rte, sst2, stsb, wnli (or the path of your own task .toml file)",
        task=["--task", "wnlii"],
    ),
    Case(
        "unknown model",
        ["--data", "{shared}", "--model", "bert-tinny"],
        "glue-bench: error: unknown model 'bert-tinny': did you mean 'bert-tiny'? use bert-tiny|mini|small|medium|"
        "base, L-<layers>_H-<hidden> with layers in (2, 4, 6, 8, 10, 12) and hidden in (128, 256, 512, 768), "
        "random:L-2_H-128, a local model folder, or a Hub id (org/name)",
    ),
    Case(
        "unknown model shape",
        ["--data", "{shared}", "--model", "random:L-3_H-128"],
        "glue-bench: error: unknown model 'random:L-3_H-128': did you mean 'random:L-2_H-128'? use bert-tiny|mini|small|"
        "medium|base, L-<layers>_H-<hidden> with layers in (2, 4, 6, 8, 10, 12) and hidden in (128, 256, 512, "
        "768), random:L-2_H-128, a local model folder, or a Hub id (org/name)",
    ),
    Case(
        "task TOML: misspelt key",
        ["--data", "{shared}"],
        "glue-bench: error: {tmp}/mine.toml: unknown key 'lables' (did you mean 'labels'?)",
        task_toml("mine", "labels =", "lables ="),
        task=["--task", "{tmp}/mine.toml"],
    ),
    Case(
        "task TOML: misspelt key in a split",
        ["--data", "{shared}"],
        "glue-bench: error: {tmp}/mine.toml [splits.train]: unknown key 'lable' (did you mean 'label'?)",
        task_toml("mine", 'label = "label"', 'lable = "label"'),
        task=["--task", "{tmp}/mine.toml"],
    ),
    Case(
        "task TOML: wrong type (rows as a string)",
        ["--data", "{shared}"],
        "glue-bench: error: {tmp}/mine.toml [splits.validation]: key 'rows' must be int, got '71'",
        task_toml("mine", "rows = 71", 'rows = "71"'),
        task=["--task", "{tmp}/mine.toml"],
    ),
    Case(
        "task TOML: wrong type (regression as a string)",
        ["--data", "{shared}"],
        "glue-bench: error: {tmp}/mine.toml: key 'regression' must be bool, got 'no'",
        task_toml("mine", "regression = false", 'regression = "no"'),
        task=["--task", "{tmp}/mine.toml"],
    ),
    Case(
        "task TOML: not TOML",
        ["--data", "{shared}"],
        "glue-bench: error: {tmp}/mine.toml: not valid TOML (Expected '=' after a key in a key/value pair "
        "(at line 4, column 9))",
        task_toml("mine", 'glue_dir = "WNLI"', "glue_dir: WNLI"),
        task=["--task", "{tmp}/mine.toml"],
    ),
    Case(
        "zero learning rate",
        ["--data", "{shared}", "--lr", "0"],
        "glue-bench run: error: argument --lr: must be a positive number, got 0; see glue-bench run --help",
    ),
    Case(
        "negative learning rate",
        ["--data", "{shared}", "--lr=-1e-4"],
        "glue-bench run: error: argument --lr: must be a positive number, got -1e-4; see glue-bench run --help",
    ),
    Case(
        "NaN learning rate",
        ["--data", "{shared}", "--lr", "nan"],
        "glue-bench run: error: argument --lr: must be a positive number, got nan; see glue-bench run --help",
    ),
    Case(
        "zero batch size",
        ["--data", "{shared}", "--batch-size", "0"],
        "glue-bench run: error: argument --batch-size: must be a positive whole number, got 0; "
        "see glue-bench run --help",
    ),
    Case(
        "negative batch size",
        ["--data", "{shared}", "--batch-size=-8"],
        "glue-bench run: error: argument --batch-size: must be a positive whole number, got -8; "
        "see glue-bench run --help",
    ),
    Case(
        "negative max train samples (0, the default, means every row)",
        ["--data", "{shared}", "--max-train-samples=-1"],
        "glue-bench run: error: argument --max-train-samples: must be a whole number >= 0, got -1; "
        "see glue-bench run --help",
    ),
    Case(
        "unreachable storage (PostgreSQL, nothing listening)",
        ["--data", "{shared}", "--storage", "postgresql://u:p@127.0.0.1:1/x"],
        "glue-bench: error: --storage postgresql://u:***@127.0.0.1:1/x: cannot open the storage (OperationalError: "
        '(psycopg2.OperationalError) connection to server at "127.0.0.1", port 1 failed: Connection refused); '
        "check the URL (sqlite:///path.db or postgresql://user:pass@host/db) and that the server is up",
    ),
    Case(
        "SQLite storage under a file, not a folder",
        ["--data", "{shared}", "--storage", "sqlite:///{tmp}/a-file/x.db"],
        "glue-bench: error: --storage sqlite:///{tmp}/a-file/x.db: cannot create the folder {tmp}/a-file "
        "({tmp}/a-file is a file, not a folder); pass a SQLite file in a writable folder (sqlite:///path/to/file.db)",
    ),
    Case(
        "SQLite storage that is a folder",
        ["--data", "{shared}", "--storage", "sqlite:///{tmp}"],
        "glue-bench: error: --storage sqlite:///{tmp}: cannot open the storage (OperationalError: "
        "(sqlite3.OperationalError) unable to open database file); check the URL (sqlite:///path.db or "
        "postgresql://user:pass@host/db) and that the server is up",
    ),
    Case(
        "SQLite storage that is not a database",
        ["--data", "{shared}", "--storage", "sqlite:///{tmp}/a-file"],
        "glue-bench: error: --storage sqlite:///{tmp}/a-file: cannot open the storage (DatabaseError: "
        "(sqlite3.DatabaseError) file is not a database); check the URL (sqlite:///path.db or "
        "postgresql://user:pass@host/db) and that the server is up",
    ),
    Case("Hub unreachable, --data hub", ["--data", "hub"], f"glue-bench: error: {HUB_OFFLINE}"),
    Case("Hub unreachable, no --data and no GLUE_BENCH_DATA", [], f"glue-bench: error: {HUB_OFFLINE}"),
    Case(
        "Hub unreachable, a Hub model not in the cache",
        ["--data", "{shared}", "--model", "bert-tiny"],
        "glue-bench: error: cannot load model 'L-2_H-128' from the Hugging Face Hub "
        "(google/bert_uncased_L-2_H-128_A-2), which is unreachable, and it is not in the local cache: We couldn't "
        "connect to 'https://huggingface.co' to load the files, and couldn't find them in the cached files.; "
        "offline, pass a local folder (--model path/to/model) or random:L-2_H-128",
    ),
]


# --- running them --------------------------------------------------------------------------------------------


def _fill(text: str, places: dict) -> str:
    for key, value in places.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def case_argv(case: Case, places: dict) -> list[str]:
    """`glue-bench run` arguments: the quick defaults, then the case's own (a later option wins)."""
    return [_fill(a, places) for a in ["run", *MODEL, *QUICK, "--storage", "{storage}", *case.task, *case.args]]


def prepare_case(case: Case, tmp: Path, shared: Path) -> Path:
    """The damaged copy of the data (if the case damages any) and the files the storage cases need."""
    data = tmp / "glue_data"
    if case.damage:
        for name in ("WNLI", "CoLA", "RTE"):
            shutil.copytree(shared / name, data / name)
        case.damage(data)
    (tmp / "a-file").write_text("not a database\n")
    return data


def offline_env(monkeypatch, tmp: Path) -> None:
    """No Hub, no local Hugging Face cache, no default data folder: as on a fresh offline machine."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp / "hf-home"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.delenv("GLUE_BENCH_DATA", raising=False)


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


def storage_digest(db: Path) -> dict[str, str]:
    """Every byte of the SQLite file and of each prediction artifact beside it."""
    files = [db, *sorted((db.parent / "artifacts").rglob("*"))]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


@pytest.fixture(scope="module")
def recorded(glue_data, tmp_path_factory):
    """A storage holding one real trial, recorded before any bad input is tried against it."""
    folder = tmp_path_factory.mktemp("recorded")
    url = f"sqlite:///{folder / 'runs.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLUE_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "glue-bench-cache"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        assert main(["run", *MODEL, *QUICK, "--task", "wnli", "--data", str(glue_data), "--storage", url]) == 0
    trials = optuna.load_study(study_name="adhoc/random:L-2_H-128/wnli", storage=url).trials
    assert [(t.state.name, t.params) for t in trials] == [("COMPLETE", {"batch_size": 32, "lr": 1e-4, "seed": 0})]
    return url, folder / "runs.db", storage_digest(folder / "runs.db")


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_bad_input_ends_in_one_line_and_exit_2(case, recorded, glue_data, tmp_path, monkeypatch, capsys):
    url, db, before = recorded
    offline_env(monkeypatch, tmp_path)
    places = {"data": prepare_case(case, tmp_path, glue_data), "shared": glue_data, "tmp": tmp_path, "storage": url}
    code, err = run_main(case_argv(case, places), capsys)
    assert (code, err) == (2, _fill(case.expected, places) + "\n")
    assert storage_digest(db) == before


def test_the_recorded_trial_survives_every_bad_input(recorded):
    """Run last in this file (pytest keeps file order): the first trial is still there, complete, with its score."""
    url, _, _ = recorded
    trials = optuna.load_study(study_name="adhoc/random:L-2_H-128/wnli", storage=url).trials
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE")]
    assert trials[0].user_attrs["metrics"]["validation"]["accuracy"] == trials[0].value


# --- sweep files ------------------------------------------------------------------------------------------------

SWEEP = """name = "mine"
models = ["random:L-2_H-128"]
tasks = ["wnli"]
epochs = 1
seeds = [0]
data = "{data}"

[grid]
batch_size = [32]
lr = [1e-4]

[recipe]
max_train_samples = 32
"""
SWEEP_CASES = [  # (what, text replaced, replacement, the one stderr line)
    (
        "sweep TOML: misspelt key",
        "epochs = 1",
        "epoch = 1",
        "glue-bench: error: {tmp}/mine.toml: unknown key 'epoch' (did you mean 'epochs'?)",
    ),
    (
        "sweep TOML: wrong type",
        "epochs = 1",
        'epochs = "1"',
        "glue-bench: error: {tmp}/mine.toml: 'epochs' must be a positive whole number, got '1'",
    ),
    (
        "sweep TOML: misspelt recipe key",
        "max_train_samples",
        "max_train_sample",
        "glue-bench: error: {tmp}/mine.toml [recipe]: unknown key 'max_train_sample' (did you mean 'max_train_samples'?)",
    ),
    (
        "sweep TOML: zero learning rate",
        "lr = [1e-4]",
        "lr = [0]",
        "glue-bench: error: {tmp}/mine.toml [grid]: 'lr' must be a non-empty list of positive numbers, got [0]",
    ),
    (
        "sweep TOML: negative batch size",
        "batch_size = [32]",
        "batch_size = [-8]",
        "glue-bench: error: {tmp}/mine.toml [grid]: 'batch_size' must be a non-empty list of positive whole numbers, "
        "got [-8]",
    ),
    (
        "sweep TOML: unknown task",
        '["wnli"]',
        '["wnlii"]',
        "glue-bench: error: {tmp}/mine.toml: tasks: unknown task 'wnlii': did you mean 'wnli'? known tasks: ax, cola, "
        "mnli, mrpc, qnli, qqp, rte, sst2, stsb, wnli (or the path of your own task .toml file)",
    ),
    (
        "sweep over a truncated TSV",
        "",
        "",
        "glue-bench: error: {data}/WNLI/train.tsv: line 636 has 3 of 4 tab-separated fields: the file is cut short or "
        f"damaged; {REPLACE}",
    ),
]


@pytest.mark.parametrize("what, old, new, expected", SWEEP_CASES, ids=[c[0] for c in SWEEP_CASES])
def test_a_bad_sweep_ends_in_one_line_and_exit_2(
    what, old, new, expected, recorded, glue_data, tmp_path, monkeypatch, capsys
):
    """Against the storage that holds a trial: no study is created, nothing recorded changes. A damaged data
    file is caught by the pre-flight, before any grid point becomes a failed trial."""
    url, db, before = recorded
    offline_env(monkeypatch, tmp_path)
    data = tmp_path / "glue_data"
    shutil.copytree(glue_data / "WNLI", data / "WNLI")
    if what == "sweep over a truncated TSV":
        cut_bytes("WNLI/train.tsv", lambda size: size - 30)(data)
    (tmp_path / "mine.toml").write_text(SWEEP.replace("{data}", str(data)).replace(old, new, 1))
    code, err = run_main(["sweep", str(tmp_path / "mine.toml"), "--storage", url, "--no-progress"], capsys)
    assert (code, err) == (2, _fill(expected, {"tmp": tmp_path, "data": data}) + "\n")
    assert storage_digest(db) == before
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["adhoc/random:L-2_H-128/wnli"]


# --- through the installed console script: what a user's terminal shows ---------------------------------------


def _script() -> str:
    script = Path(sys.executable).parent / "glue-bench"
    if not script.is_file():
        pytest.skip(f"{script} not found: install the package (pip install -e .)")
    return str(script)


@pytest.mark.parametrize(
    "what", ["truncated TSV (cut mid-row)", "Hub unreachable, --data hub", "negative learning rate"]
)
def test_the_console_script_prints_one_line_and_exits_2(what, recorded, glue_data, tmp_path, monkeypatch):
    case = next(c for c in CASES if c.what == what)
    url, db, before = recorded
    offline_env(monkeypatch, tmp_path)
    places = {"data": prepare_case(case, tmp_path, glue_data), "shared": glue_data, "tmp": tmp_path, "storage": url}
    done = subprocess.run(
        [_script(), *case_argv(case, places)], capture_output=True, text=True, timeout=600, env=os.environ.copy()
    )
    assert "Traceback" not in done.stderr
    assert (done.returncode, done.stderr, done.stdout) == (2, _fill(case.expected, places) + "\n", "")
    assert storage_digest(db) == before


# --- numerical faults ---------------------------------------------------------------------------------------------


def test_a_diverging_run_stops_and_is_recorded_as_failed_with_its_step(glue_data, storage, capsys):
    """lr 1e10 on random:L-2_H-128: step 1 has lr 0 (warmup), step 2's update blows the weights up, and the
    loss of step 3 is NaN. The loss is looked at on step 8 (the last); the step named is the first bad one."""
    code, err = run_main(
        [
            "run",
            *MODEL,
            "--task",
            "wnli",
            "--data",
            str(glue_data),
            "--batch-size",
            "8",
            "--lr",
            "1e10",
            "--epochs",
            "1",
            "--max-train-samples",
            "64",
            "--no-progress",
            "--storage",
            storage,
        ],
        capsys,
    )
    assert (code, err) == (
        1,
        "glue-bench: the run diverged (loss became nan at step 3); recorded as failed "
        "trial 0 of adhoc/random:L-2_H-128/wnli\n",
    )
    trials = optuna.load_study(study_name="adhoc/random:L-2_H-128/wnli", storage=storage).trials
    assert [(t.state.name, t.params, t.user_attrs["fail_reason"]) for t in trials] == [
        ("FAIL", {"batch_size": 8, "lr": 1e10, "seed": 0}, "diverged: loss became nan at step 3")
    ]


@pytest.mark.slow
def test_a_sweep_records_the_diverging_trial_and_goes_on(glue_data, tmp_path, storage, monkeypatch, capsys):
    """Real divergence in a real sweep (worker processes): lr 1e10 fails at step 3, lr 1e-4 still runs."""
    offline_env(monkeypatch, tmp_path)
    sweep = (
        SWEEP.replace("{data}", str(glue_data))
        .replace("lr = [1e-4]", "lr = [1e10, 1e-4]")
        .replace("batch_size = [32]", "batch_size = [8]")
        .replace("samples = 32", "samples = 64")
    )
    (tmp_path / "mine.toml").write_text(sweep)
    code, _ = run_main(["sweep", str(tmp_path / "mine.toml"), "--storage", storage, "--no-progress"], capsys)
    assert code == 1  # some trial failed
    trials = optuna.load_study(study_name="mine/random:L-2_H-128/wnli", storage=storage).trials
    assert sorted((t.params["lr"], t.state.name, t.user_attrs.get("fail_reason")) for t in trials) == [
        (1e-4, "COMPLETE", None),
        (1e10, "FAIL", "diverged: loss became nan at step 3"),
    ]


def test_max_train_samples_zero_the_documented_default_is_accepted():
    from glue_bench.cli import build_parser

    argv = ["run", "--model", "random:L-2_H-128", "--task", "rte", "--batch-size", "8", "--lr", "1e-4"]
    assert build_parser().parse_args([*argv, "--max-train-samples", "0"]).max_train_samples == 0
    assert build_parser().parse_args(argv).max_train_samples == 0


SECRET_URL = "postgresql://glue:s3cret@127.0.0.1:1/x"  # nothing listens on port 1


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "{sweep}", "--storage", SECRET_URL],
        ["sweep", "{sweep}", "--storage", SECRET_URL],
        ["sweep", "{sweep}", "--storage", SECRET_URL, "--dry-run"],
        ["export", "--storage", SECRET_URL, "--out", "{tmp}/runs.csv"],
        ["report", "--storage", SECRET_URL],
        ["submit", "--storage", SECRET_URL, "--model", "bert-tiny", "--out", "{tmp}/s.zip"],
        ["check", "--storage", SECRET_URL, "--baseline", "results/baselines/ci-baseline.csv"],
        [
            "run",
            "--model",
            "random:L-2_H-128",
            "--task",
            "wnli",
            "--batch-size",
            "8",
            "--lr",
            "1e-4",
            "--storage",
            SECRET_URL,
        ],
    ],
    ids=lambda argv: argv[0] + (" --dry-run" if "--dry-run" in argv else ""),
)
def test_an_unreachable_storage_is_one_line_and_never_shows_its_password(argv, tmp_path, glue_data, capsys):
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        f'models = ["random:L-2_H-128"]\ntasks = ["wnli"]\ndata = "{glue_data}"\n'
        "[grid]\nbatch_size = [8]\nlr = [1e-4]\n"
    )
    argv = [a.format(sweep=sweep, tmp=tmp_path) for a in argv]
    code = main(argv)
    out, err = capsys.readouterr()
    assert "s3cret" not in out + err
    assert code == 2
    assert err.count("\n") == 1 and "cannot" in err and "postgresql://glue:***@127.0.0.1:1/x" in err, err


def test_a_misspelt_option_gets_the_closest_one(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", "sweeps/cpu-smoke.toml", "--wokers", "2"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "glue-bench: error: unrecognized arguments: --wokers 2 (did you mean '--workers'?); see glue-bench --help\n"
    )


def test_run_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "passes over the train rows (default: 4)" in out and "(default: fast)" in out
