"""Reports and compare say how each row was trained, so that unlike runs are never set side by side unnamed;
the published dev references (results/dev-reference.csv) beside ours, as checked against their model cards.

A: random:L-2_H-128 from a smoke sweep (500 train rows, 1 epoch, the best of 4 grid points); B: random:L-4_H-256
from one `glue-bench run` (1,000 rows, 3 epochs, one configuration), both on RTE: the case that misled a user.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest

from glue_bench.cli import main
from glue_bench.errors import UserError
from glue_bench.inputs.tasks import registry
from glue_bench.reporting import leaderboard, page, plots, recipes, references, render
from glue_bench.reporting.compare import compare

A, B = "random:L-2_H-128", "random:L-4_H-256"


def trial(number, sweep, model, bs, lr, accuracy, epochs, rows, seed=0, task="rte"):
    return {
        "sweep": sweep,
        "model": model,
        "task": task,
        "study": f"{sweep}/{model}/{task}",
        "trial": number,
        "state": "COMPLETE",
        "batch_size": bs,
        "lr": lr,
        "seed": seed,
        "score": accuracy,
        "dev/validation/accuracy": accuracy,
        "epochs": epochs,
        "max_seq_length": 128,
        "max_train_samples": rows,
    }


def unlike() -> pd.DataFrame:
    """A's four grid points (the best: bs 16, lr 1e-4, 52.7) and B's one configuration (47.3)."""
    grid = [(16, 1e-4, 0.527), (16, 3e-5, 0.505), (32, 1e-4, 0.516), (32, 3e-5, 0.473)]
    rows = [trial(i, "cpu-smoke", A, bs, lr, acc, 1, 500) for i, (bs, lr, acc) in enumerate(grid)]
    rows.append(trial(0, "adhoc", B, 32, 1e-4, 0.473, 3, 1000))
    return pd.DataFrame(rows)


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def test_recipe_values_compare_as_text():
    assert [recipes.text(v) for v in (1.0, 3, 0.01, True, "False", "", None, float("nan"), "fast")] == [
        "1",
        "3",
        "0.01",
        "true",
        "false",
        "none",
        "none",
        "none",
        "fast",
    ]
    merged = recipes.merged({"cola": {"epochs": "1", "x": "a"}, "rte": {"epochs": "3", "x": "a"}})
    assert merged == {"epochs": "1 (cola); 3 (rte)", "x": "a"}
    shared, own = recipes.split({"A": {"epochs": "1", "x": "a"}, "B": {"epochs": "3", "x": "a"}})
    assert shared == {"x": "a"} and own == {"A": {"epochs": "1"}, "B": {"epochs": "3"}}
    assert recipes.differences({"epochs": "1", "x": "a"}, {"epochs": "3", "x": "a"}) == ["epochs 1 → 3"]
    assert recipes.describe({"max_train_samples": "500", "configurations": "4"}) == (
        "max_train_samples=500 (the first 500 train rows), best of 4 configurations"
    )


def test_the_leaderboard_names_each_rows_recipe_and_marks_a_subset_beside_the_paper():
    text = render.markdown(leaderboard.leaderboard(unlike(), compare="paper"))
    assert "\nRecipe of every model's row: max_seq_length=128.\n" in text
    assert table_lines(text)[0] == (
        "| Model | Source | Recipe | Score | CoLA | SST-2 | MRPC | STS-B | QQP | MNLI-m | MNLI-mm | QNLI | RTE | WNLI | AX |"
    )
    rows = [line.split(" | ")[:4] for line in table_lines(text)[2:]]
    assert rows == [
        [
            f"| {A}",
            "ours (dev, 500 train rows)",
            "epochs=1, max_train_samples=500 (the first 500 train rows), best of 4 configurations",
            "52.7 (1/9)",
        ],
        [
            "| BERT-Tiny (L-2_H-128)",
            "paper (test)",
            "epochs=4, max_train_samples=0 (every train row), best of 20 configurations",
            "64.2",
        ],
        ["| ", "Δ", "", "-4.5 (1/9)"],
        [
            f"| {B}",
            "ours (dev, 1000 train rows)",
            "epochs=3, max_train_samples=1000 (the first 1000 train rows), 1 configuration (no selection)",
            "47.3 (1/9)",
        ],
        [
            "| BERT-Mini (L-4_H-256)",
            "paper (test)",
            "epochs=4, max_train_samples=0 (every train row), best of 20 configurations",
            "65.8",
        ],
        ["| ", "Δ", "", "-10.6 (1/9)"],
    ]
    assert "ours (dev, N train rows): trained on the first N train rows only, not the whole train set." in text


def test_every_format_states_the_recipes():
    board = leaderboard.leaderboard(unlike())
    assert table_lines(render.markdown(board))[2].split(" | ")[:3] == [
        f"| {A}",
        "epochs=1, max_train_samples=500 (the first 500 train rows), best of 4 configurations",
        "52.7 (1/9)",
    ]
    # CSV: each row's own recipe, and the shared one repeated in its own column (a CSV row is read alone)
    frame = pd.read_csv(io.StringIO(render.csv(board)))
    assert list(frame.columns[:3]) == ["Model", "Recipe", "Score"] and frame.columns[-1] == "Shared recipe"
    assert frame["Recipe"].tolist() == [
        "epochs=1, max_train_samples=500 (the first 500 train rows), best of 4 configurations",
        "epochs=3, max_train_samples=1000 (the first 1000 train rows), 1 configuration (no selection)",
    ]
    assert frame["Shared recipe"].tolist() == ["max_seq_length=128"] * 2
    latex = render.latex(board)
    assert r"\begin{tabular}{llrrrrrrrrrrrr}" in latex and "Recipe of every row: max\\_seq\\_length=128." in latex
    assert "epochs=3, max\\_train\\_samples=1000 (the first 1000 train rows)" in latex
    html = page.page(board, unlike())
    assert "<th>Recipe</th>" in html and "<p>Recipe of every row: max_seq_length=128.</p>" in html
    assert (
        '<td class="prose">epochs=1, max_train_samples=500 (the first 500 train rows), best of 4 configurations' in html
    )


def test_rows_that_agree_state_their_recipe_once():
    same = unlike()
    same.loc[same["model"] == B, ["epochs", "max_train_samples"]] = [1, 500]
    same = pd.concat([same[same["model"] == A].iloc[:1], same[same["model"] == B]])  # one configuration each
    board = leaderboard.leaderboard(same)
    text = render.markdown(board)
    assert "Recipe" not in table_lines(text)[0]
    assert (
        "\nRecipe of every row: epochs=1, max_seq_length=128, max_train_samples=500 (the first 500 train rows), "
        "1 configuration (no selection).\n" in text
    )
    assert pd.read_csv(io.StringIO(render.csv(board)))["Shared recipe"].nunique() == 1


def test_the_figure_stars_a_subset_beside_the_paper():
    scores = leaderboard.model_scores(unlike())
    assert scores[["model", "subset"]].values.tolist() == [[A, True], [B, True]]
    _, said = plots.png(unlike(), compare_paper=True)
    assert said == "GLUE score: 2 of 24 shapes in the grid, 2 models in the scatter"


def test_compare_names_every_recipe_field_in_which_a_and_b_differ():
    text = render.markdown(compare(unlike(), None, A, B))
    assert table_lines(text)[0] == "| Task | Unlike recipes | A | B | B − A | 95% interval | Verdict |"
    assert table_lines(text)[2] == (
        "| rte | epochs 1 → 3; max_train_samples 500 → 1000; configurations 4 → 1; batch_size 16 → 32 "
        "| 52.7 | 47.3 | -5.4 | — | no interval |"
    )
    assert "\nRecipe of A and B: max_seq_length=128, lr=1e-4, seeds 0.\n" in text
    assert "A and B were trained or selected differently (Unlike recipes, A → B)" in text
    # the same recipe: no column, the recipe once
    same = unlike()
    same.loc[same["model"] == B, ["epochs", "max_train_samples", "batch_size"]] = [1, 500, 16]
    same = same[(same["model"] == B) | (same["trial"] == 0)]
    text = render.markdown(compare(same, None, A, B))
    assert table_lines(text)[0] == "| Task | A | B | B − A | 95% interval | Verdict |"
    assert (
        "\nRecipe of A and B: epochs=1, max_seq_length=128, max_train_samples=500 (the first 500 train rows), "
        "1 configuration (no selection), batch_size=16, lr=1e-4, seeds 0.\n" in text
    )


# --- the published dev references ---------------------------------------------------------------------

# Each number as its model card states it (README, "Dev references", says where each was checked).
CARDS = {
    ("BERT-Tiny", "M-FAC Adam baseline"): {
        "mrpc/validation/f1": (81.68, 0.33),
        "mrpc/validation/accuracy": (69.90, 0.32),
        "stsb/validation/pearson": (64.39, 5.02),
        "stsb/validation/spearman": (66.52, 5.67),
        "qqp/validation/f1": (77.58, 0.08),
        "qqp/validation/accuracy": (81.09, 0.15),
        "mnli/validation_matched/accuracy": (65.36, 0.13),
        "mnli/validation_mismatched/accuracy": (66.78, 0.15),
        "qnli/validation/accuracy": (77.85, 0.15),
    },
    ("BERT-Mini", "M-FAC Adam baseline"): {
        "sst2/validation/accuracy": (85.46, 0.58),
        "mrpc/validation/f1": (84.57, 0.36),
        "mrpc/validation/accuracy": (76.57, 0.80),
        "stsb/validation/pearson": (82.09, 0.54),
        "stsb/validation/spearman": (82.64, 0.71),
        "qqp/validation/f1": (82.43, 0.10),
        "qqp/validation/accuracy": (86.45, 0.12),
        "mnli/validation_matched/accuracy": (73.30, 0.20),
        "mnli/validation_mismatched/accuracy": (74.85, 0.09),
        "qnli/validation/accuracy": (83.85, 0.10),
    },
    **{
        (model, "Bhargava et al. 2021"): {
            "mnli/validation_matched/accuracy": (matched, None),
            "mnli/validation_mismatched/accuracy": (mismatched, None),
        }
        for model, matched, mismatched in (
            ("BERT-Tiny", 60.00, 61.61),
            ("BERT-Mini", 68.04, 69.17),
            ("BERT-Small", 72.10, 73.76),
            ("BERT-Medium", 75.86, 77.03),
        )
    },
}


def test_the_shipped_dev_references_are_the_checked_numbers():
    table = references.dev_reference()
    found: dict = {}
    for r in table.itertuples():
        sd = None if pd.isna(r.sd) else r.sd
        found.setdefault((r.model, r.source), {})[f"{r.task}/{r.split}/{r.metric}"] = (r.mean, sd)
        task = registry()[r.task]  # every row names a real dev split and metric of the task
        assert r.split in [s.name for s in task.splits_with_role("dev")] and r.metric in task.metrics
        assert r.card.startswith("https://huggingface.co/") and r.card.rsplit("-", 1)[1] == r.task
    assert found == CARDS
    mfac = table[table["source"] == "M-FAC Adam baseline"]
    assert set(mfac["seeds"]) == {5} and set(mfac["batch_size"]) == {32} and set(mfac["max_seq_length"]) == {128}
    assert mfac.set_index(["model", "task"])["epochs"].to_dict()[("BERT-Mini", "sst2")] == 3
    assert set(mfac.loc[mfac["task"] != "sst2", "epochs"]) == {5}
    assert set(table.loc[table["source"] == "Bhargava et al. 2021", "epochs"]) == {4}


def test_report_compare_dev_reference(capsys):
    assert main(["report", "--runs", "tests/fixtures/report/runs.csv", "--compare", "dev-reference"]) == 0
    lines = table_lines(capsys.readouterr().out)
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header = cells[0]
    shown = [dict(zip(header, row)) for row in cells[2:]]
    tiny = [row for row in shown if row["Model"] == "BERT-Tiny (L-2_H-128)"]
    assert [row["Source"] for row in tiny] == ["M-FAC Adam baseline (dev)", "Bhargava et al. 2021 (dev)"]
    assert tiny[0]["Recipe"] == (
        "epochs=5, max_seq_length=128, max_train_samples=0 (every train row), 1 configuration (no selection), "
        "batch_size=32, lr=1e-4, mean of 5 runs"
    )
    assert [tiny[0][c] for c in ("MRPC", "STS-B", "MNLI-m", "MNLI-mm", "QNLI")] == [
        "81.7±0.3/69.9±0.3",
        "64.4±5.0/66.5±5.7",
        "65.4±0.1",
        "66.8±0.1",
        "77.8±0.1",
    ]
    deltas = [row for row in shown if row["Source"] == "Δ"]
    # ours (the fixture): MRPC 81.0/70.0, MNLI 70.0/71.0 → 81.0 − 81.68, 70.0 − 69.90, 70.0 − 65.36, 71.0 − 66.78
    assert [deltas[0][c] for c in ("MRPC", "MNLI-m", "MNLI-mm", "STS-B")] == ["-0.7/+0.1", "+4.6", "+4.2", "—"]
    assert [deltas[1][c] for c in ("MNLI-m", "MNLI-mm")] == ["+10.0", "+9.4"]  # 70.0 − 60.00, 71.0 − 61.61
    mini = [row for row in shown if row["Model"] == "BERT-Mini (L-4_H-256)"]
    assert mini[0]["SST-2"] == "85.5±0.6" and mini[0]["Recipe"] == (
        "epochs=3 (sst2); 5 (mrpc, stsb, qqp, mnli, qnli), max_seq_length=128, max_train_samples=0 (every train row), "
        "1 configuration (no selection), batch_size=32, lr=1e-4, mean of 5 runs"
    )
    assert [row["Source"] for row in shown].count("M-FAC Adam baseline (dev)") == 2  # no row for someorg/tiny-bert


@pytest.mark.parametrize(
    "spec, fix",
    [
        ("bert-tiny/rte", "bert-tiny:rte"),
        ("L-2_H-128/rte", "L-2_H-128:rte"),
        ("random:L-2_H-128/rte", "random:L-2_H-128:rte"),
        ("someorg/tiny-bert/sst2", "someorg/tiny-bert:sst2"),
    ],
)
def test_a_slash_for_the_colon_in_grid_is_named(spec, fix, capsys):
    assert main(["report", "--runs", "tests/fixtures/report/runs.csv", "--grid", spec]) == 2
    err = capsys.readouterr().err
    assert err == f"glue-bench: error: --grid {spec}: write MODEL:TASK, a colon before the task: --grid {fix}\n"
    from glue_bench.reporting.grid import grid

    with pytest.raises(UserError):
        grid(pd.read_csv("tests/fixtures/report/runs.csv"), spec)


# --- compare on real trials (slow stage) ----------------------------------------------------------------

SMALL = "random:L-2_H-256"


@pytest.fixture(scope="module")
def real_unlike(glue_data, tmp_path_factory):
    """Real WNLI fine-tunes: A at two learning rates (64 rows, 1 epoch, batch 16); B once (32 rows, 2 epochs,
    batch 32): unlike recipes, the same dev rows."""
    url = f"sqlite:///{tmp_path_factory.mktemp('unlike') / 'runs.db'}"
    common = ["run", "--task", "wnli", "--data", str(glue_data), "--storage", url, "--no-progress"]
    for lr in ("1e-4", "3e-5"):
        argv = ["--model", A, "--batch-size", "16", "--lr", lr, "--epochs", "1", "--max-train-samples", "64"]
        assert main([*common, *argv]) == 0
    argv = ["--model", SMALL, "--batch-size", "32", "--lr", "1e-4", "--epochs", "2", "--max-train-samples", "32"]
    assert main([*common, *argv]) == 0
    return url


@pytest.mark.slow
def test_compare_of_real_unlike_trials_names_the_differences_and_refuses_other_dev_rows(real_unlike, tmp_path, capsys):
    import json

    from conftest import copy_storage

    from glue_bench.reporting import selection
    from glue_bench.sweeping.storage import artifacts_dir

    table = selection.load_runs(real_unlike)
    chosen = selection.best(table).set_index("model").loc[A, "lr"]
    lr = "" if recipes.lr(chosen) == "1e-4" else f"; lr {recipes.lr(chosen)} → 1e-4"
    capsys.readouterr()
    assert main(["compare", A, SMALL, "--storage", real_unlike, "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(frame.columns) == [
        "Task",
        "Unlike recipes",
        "A",
        "B",
        "B − A",
        "95% interval",
        "Verdict",
        "Shared recipe",
    ]
    assert frame.loc[0, "Task"] == "wnli" and frame.loc[0, "95% interval"].startswith("[")
    assert frame.loc[0, "Unlike recipes"] == (
        f"epochs 1 → 2; max_train_samples 64 → 32; configurations 2 → 1; batch_size 16 → 32{lr}"
    )
    assert frame.loc[0, "Shared recipe"].endswith(", seeds 0")
    # B scored on one dev row fewer (another data folder, another task file): no paired comparison at all
    other = copy_storage(real_unlike, tmp_path / "other")
    row = table.set_index("model").loc[SMALL]
    path = artifacts_dir(other) / selection.prediction_ids(row, "dev_predictions")["wnli/validation"]
    values = json.loads(path.read_text())
    path.write_text(json.dumps({key: value[:-1] for key, value in values.items()}))
    assert main(["compare", A, SMALL, "--storage", other]) == 2
    assert capsys.readouterr().err == (
        f"glue-bench: error: compare: {A} and {SMALL} were scored on different wnli dev rows (another task file or "
        "data), so no difference between them can be paired; compare models scored on the same dev split\n"
    )
