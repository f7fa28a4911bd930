"""glue-bench: reproduce, extend and guard GLUE results of BERT-family models.

The package is grouped by stage, and each stage imports only the stages below it (an import-linter
`layers` contract in pyproject.toml keeps it so):

    cli/         the command line, a thin layer over the library (a module per group of commands)
    reporting/   selection of the best configuration → leaderboard, grid, plots, submissions, AX, CI gate
    sweeping/    sweep files, trials recorded into Optuna, studies, worker, launcher, storage, runs table
    training/    the fine-tune loop and the metrics
    inputs/      tasks, data sources, model references, the Hub probe, the shipped reference files
    errors.py    the one error type a user can cause (every stage raises it)
"""

__version__ = "0.1.0"
