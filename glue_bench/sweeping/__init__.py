"""Stage 3, sweeping: many fine-tunes, recorded in the Optuna storage, the one system of record.

Reads sweep files (sweeps/*.toml) and runs each grid point as one trial through training/: sweep files,
one trial recorded into Optuna, the studies and their planning, the worker, the launcher, the storage, the
cost model of a dry run. Hands up the runs table (pandas, one row per trial) that every report reads.
"""
