"""Stage 1, inputs: what a trial is made of, checked before anything runs.

Reads the task files (tasks/*.toml), a data source (the Hub, a glue_data folder, a Hub parquet folder),
a model reference, and the reference files shipped with the package. Hands up frozen Task records,
uniform splits (text_a, text_b, label, idx) with their tokenization cache, and (model, tokenizer) pairs.
Imports no other stage.
"""
