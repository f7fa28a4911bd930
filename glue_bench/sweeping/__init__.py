"""Stage 3, sweeping: many fine-tunes, recorded in the Optuna storage, the one system of record.

Reads sweep files (sweeps/*.toml) and runs each grid point as one trial through training/. Hands up the runs
table (pandas, one row per trial) that every report reads. Its modules form layers, each importing only those
below it (pyproject.toml's import-linter contracts; the README's code map names each module's concern):
launcher, worker, cost | trial | recording | studies, status, runs | preflight | prefetch, teacher |
sweep_file, kept, artifacts | schema, storage, stops.
"""
