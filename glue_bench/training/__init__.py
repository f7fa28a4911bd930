"""Stage 2, training: one fine-tune, and the metrics that score it.

Reads a Task, its tokenized splits and a model from inputs/. Hands up the Recipe (every option that can
change a result), the fine-tune loop's outcome (dev metrics per epoch, test predictions, timings) and the
task and GLUE scores. Knows nothing of Optuna, sweeps or reports.
"""
