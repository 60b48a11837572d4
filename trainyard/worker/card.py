"""The ``model.json`` card beside each ``model.keras``: what the model is, so a file taken elsewhere
still says where it came from.

A card holds the job (id, name, tags), the model file's sha256, the model's inputs (names, dtypes
and shapes, read from the file itself, and the table columns each takes), the outputs of the spec,
the final validation and test metrics, the lineage as the submitter and the worker recorded it, and
the whole spec document. It is written once the job succeeded, atomically (a new file renamed over
the old one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from trainyard import lineage
from trainyard.db import JobRecord
from trainyard.db.records import isoformat

#: The ``format`` field of a card; changes when its layout does.
CARD_FORMAT = "trainyard.model-card/1"

#: The card's name, beside the model file.
CARD_NAME = "model.json"


def card_path(model_file: str | os.PathLike[str]) -> Path:
    """Where the card of a model file lives: ``model.json`` in the same folder."""
    return Path(model_file).with_name(CARD_NAME)


def card_document(job: JobRecord, model_file: str | os.PathLike[str]) -> dict[str, Any]:
    """The card of ``job`` (read with its spec: ``Store.get_job``) whose model is ``model_file``."""
    spec = job.spec_document or {}
    outputs = spec.get("outputs") if isinstance(spec.get("outputs"), dict) else {}
    return {
        "format": CARD_FORMAT,
        "job": {"id": job.id, "name": job.name, "tags": list(job.tags), "finished_at": isoformat(job.finished_at)},
        "model_file": Path(model_file).name,
        "model_sha256": lineage.file_sha256(model_file),
        "inputs": _inputs(model_file, spec),
        "outputs": {
            name: {key: entry.get(key) for key in ("type", "target", "loss") if key in entry}
            for name, entry in outputs.items()
            if isinstance(entry, dict)
        },
        "metrics": {
            "val": {name: dict(values) for name, values in job.val_metrics.items()},
            "test": {name: dict(values) for name, values in job.test_metrics.items()},
            "best_epoch": job.best_epoch,
            "epochs": job.epochs_done,
        },
        "lineage": job.lineage,
        "spec": spec,
    }


def _inputs(model_file: str | os.PathLike[str], spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's inputs as the file declares them, each with the table columns it takes."""
    from trainyard.specs.features import signature_from_document

    signature = signature_from_document(spec)
    inputs = lineage.model_inputs(model_file)
    for entry in inputs:
        columns = signature.get(str(entry["name"]), {}).get("columns")
        if columns is not None:
            entry["columns"] = list(columns)
    return inputs


def write_card(job: JobRecord, model_file: str | os.PathLike[str]) -> Path:
    """Write the card of ``job`` beside ``model_file`` (atomically) and return its path."""
    target = card_path(model_file)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(card_document(job, model_file), indent=2, allow_nan=False) + "\n")
    os.replace(partial, target)
    return target
