"""Test and dev predictions in the artifact store: each split one JSON artifact, written once under a new id (the
storage is not touched: recording links them to the trial that records them), read back by its id."""

from __future__ import annotations

import io
import json
import tempfile
import uuid
from pathlib import Path

import optuna

from glue_bench.sweeping.storage import artifact_store


def upload_predictions(predictions: dict, storage_url: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """Each predicted split as a JSON artifact in the artifact store, written once under a new id (the storage
    is not touched: recording links them to the trial that records them). Returns ({artifact id: its meta, as
    optuna.artifacts links it}, {"task/split": artifact id}). Test splits: {"idx", "prediction"}; dev splits
    (user attr dev_predictions): {"idx", "prediction", "label"}."""
    store, links, ids = artifact_store(storage_url), {}, {}
    for key, values in predictions.items():
        artifact = str(uuid.uuid4())
        store.write(artifact, io.BytesIO(json.dumps(values).encode()))
        meta = {"artifact_id": artifact, "filename": key.replace("/", "__") + ".json"}
        links[artifact] = json.dumps({**meta, "mimetype": "application/json", "encoding": None})
        ids[key] = artifact
    return links, ids


def download_predictions(artifact_id: str, storage_url: str | None) -> dict[str, list]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "predictions.json")
        optuna.artifacts.download_artifact(
            artifact_store=artifact_store(storage_url), file_path=str(path), artifact_id=artifact_id
        )
        return json.loads(path.read_text())
