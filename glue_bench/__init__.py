"""glue-bench: reproduce, extend and guard GLUE results of BERT-family models."""

__version__ = "0.1.0"
