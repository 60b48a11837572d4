"""Job specs: YAML -> validated :class:`JobSpec` -> data arrays and the Keras model it describes.

``import trainyard.specs`` does not import TensorFlow; only :func:`validate_spec` and
:func:`build_model` do, when called.
"""

from __future__ import annotations

from trainyard.specs.builder import (
    LayerSummary,
    ModelSummary,
    allowed_layer_types,
    build_model,
    make_optimizer,
    validate_spec,
)
from trainyard.specs.data import Dataset, Split, data_fingerprint, data_paths, input_stats, load_data, outside_roots
from trainyard.specs.features import InputStats, fit_inputs, model_inputs
from trainyard.specs.loader import load_spec, spec_from_document
from trainyard.specs.schema import JobSpec, tag_problem

__all__ = [
    "Dataset",
    "InputStats",
    "JobSpec",
    "LayerSummary",
    "ModelSummary",
    "Split",
    "allowed_layer_types",
    "build_model",
    "data_fingerprint",
    "data_paths",
    "fit_inputs",
    "input_stats",
    "load_data",
    "load_spec",
    "make_optimizer",
    "model_inputs",
    "outside_roots",
    "spec_from_document",
    "tag_problem",
    "validate_spec",
]
