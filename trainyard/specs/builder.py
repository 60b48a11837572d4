"""The Keras model a spec describes: safe layer lookup, argument checks, the functional graph.

Keras is imported inside the functions, never at module level, so that ``import trainyard.specs``
stays light for Celery's parent process and quick CLI commands.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainyard.errors import Problem, SpecError
from trainyard.specs.data import input_stats, target_labels
from trainyard.specs.features import InputStats, input_dtype, layer_names, preprocess
from trainyard.specs.graph import build_order
from trainyard.specs.limits import Limits, human_bytes, recursion_room, shown
from trainyard.specs.schema import JobSpec, OutputSpec, did_you_mean

if TYPE_CHECKING:
    import keras

#: Layers that run user code, load files or wrap other layer objects: never built from a spec.
REFUSED_LAYERS = frozenset(
    {
        "Lambda", "TFSMLayer", "Layer", "InputLayer", "Input", "InputSpec", "Wrapper",
        "Bidirectional", "TimeDistributed", "SpectralNormalization", "RNN", "StackedRNNCells",
        "JaxLayer", "FlaxLayer", "TorchModuleWrapper", "Pipeline",
    }
)  # fmt: skip

_REASONS = {
    "Lambda": "it runs arbitrary Python code",
    "TFSMLayer": "it loads a saved model from a file",
    "Layer": "it is the abstract base class",
    "InputLayer": "inputs are declared under `inputs`",
    "Input": "inputs are declared under `inputs`",
}

#: Constructor parameters that take callables, layer objects or modules: a class having one is refused.
_CALLABLE_PARAMS = frozenset(
    {"function", "layer", "layers", "cell", "cells", "module", "call_fn", "init_fn", "backward_layer", "fn"}
)

#: Keyword arguments every Keras layer accepts (``name`` is the spec's own ``name``).
_BASE_ARGS = frozenset({"activity_regularizer", "trainable", "dtype", "autocast"})

_OPTIMIZER_CLASSES = {
    "sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam", "ftrl": "Ftrl", "lion": "Lion", "lamb": "Lamb",
}  # fmt: skip


@dataclass(frozen=True)
class LayerSummary:
    """One layer of a built model: its name, Keras class, output shape and parameter count."""

    name: str
    type: str
    output_shape: tuple[int | None, ...]
    params: int
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSummary:
    """What :func:`validate_spec` built: every layer, and the parameter counts of the whole model."""

    name: str
    layers: tuple[LayerSummary, ...]
    total_params: int
    trainable_params: int
    inputs: dict[str, int]
    outputs: dict[str, int]

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params


#: Summaries of specs that validated, by what the model build depends on (most recent last).
_validated: OrderedDict[str, ModelSummary] = OrderedDict()
_VALIDATED_SIZE = 256


def validate_spec(spec: JobSpec) -> ModelSummary:
    """Build the spec's Keras model once (layer types, arguments, shapes); raises SpecError with every problem.

    A spec whose inputs, layers, outputs and optimizer equal those of one already validated in this
    process is not built again (a sweep over seeds or epochs submits thousands of such specs).
    """
    # category inputs are as wide as their vocabularies: those come from the training split
    stats = input_stats(spec) if any(inp.is_category for inp in spec.inputs.values()) else None
    labels = target_labels(spec)  # a category output is as wide as its labels
    key = _build_key(spec, stats, labels)
    cached = _validated.get(key)
    if cached is not None:
        _validated.move_to_end(key)
        return dataclasses.replace(cached, name=spec.name)
    with _without_weights():
        model = build_model(spec, stats, labels)
        summary = summarize(spec, model)
    problems = check_optimizer(spec)
    if problems:
        raise SpecError(problems)
    _validated[key] = summary
    while len(_validated) > _VALIDATED_SIZE:
        _validated.popitem(last=False)
    return summary


@contextlib.contextmanager
def _without_weights() -> Iterator[None]:
    """Layers built inside create their weights without allocating them: a model's shapes and parameter
    counts at no memory cost (a 40-billion-parameter model is counted in a second, in a few MB).

    Keras' stateless scope defers a variable created in it until the scope ends; told not to
    initialise them then, Keras keeps them in a global list for a later scope to initialise. That
    list is Keras' private state: it is emptied here, so the deferred weights are never allocated
    (the tripwire: ``tests/hardening/test_limits.py``, ``test_counting_parameters_allocates_no_weights``).
    """
    import keras
    from keras.src.backend.common import global_state

    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        global_state.set_global_attribute("uninitialized_variables", [])


def _build_key(spec: JobSpec, stats: Mapping[str, InputStats] | None, labels: Mapping[str, list[Any]]) -> str:
    """Everything :func:`build_model` and :func:`check_optimizer` read, as one string (not data, seed, epochs)."""
    doc = spec.document()
    parts: dict[str, Any] = {k: doc[k] for k in ("inputs", "layers", "outputs")}
    parts["vocabularies"] = {name: [len(c.vocabulary) for c in s.columns] for name, s in (stats or {}).items()}
    parts["optimizer"] = doc["training"]["optimizer"]
    parts["units"] = {name: len(values) for name, values in labels.items()}
    return json.dumps(parts, sort_keys=True, default=repr)


def build_model(
    spec: JobSpec, stats: Mapping[str, InputStats] | None = None, labels: Mapping[str, list[Any]] | None = None
) -> keras.Model:
    """The functional Keras model of a resolved spec. Named inputs and outputs; dict in, dict out.

    Each input is one ``keras.Input`` named after it (float32, or string for a category input),
    prepared inside the model as :mod:`trainyard.specs.features` says. ``stats`` are the training
    split's statistics (:func:`~trainyard.specs.features.fit_inputs`); without them (a shape check)
    normalisation is neutral and vocabularies have one entry. ``labels`` gives each category
    output's labels (one softmax unit each; two without them). A normalized regression output
    predicts the standardized target here: :func:`prediction_model` adds what turns it back into
    the target's units.
    """
    import keras

    problems: list[Problem] = []
    classes: dict[str, type] = {}
    for i, layer in enumerate(spec.layers):
        cls, layer_problems = _layer_class(i, layer.type, layer.args)
        problems += layer_problems
        if cls is not None:
            classes[layer.name] = cls
    if problems:
        raise SpecError(problems)

    tensors: dict[str, Any] = {}
    model_inputs: dict[str, Any] = {}
    for name, inp in spec.inputs.items():
        tensor = keras.Input(shape=(len(inp.columns),), name=name, dtype=input_dtype(inp))
        model_inputs[name] = tensor
        tensors[name] = preprocess(name, inp, tensor, (stats or {}).get(name))

    limits = Limits.from_env()
    params = 0  # of the layers built so far: the first one to cross the limit is named
    index = {layer.name: i for i, layer in enumerate(spec.layers)}
    for layer in build_order(spec):
        i = index[layer.name]
        refs = layer.input or []
        if any(ref not in tensors for ref in refs):
            continue  # an input failed to build; its own problem is already listed
        try:
            instance = classes[layer.name](name=layer.name, **layer.args)
        except Exception as exc:  # noqa: BLE001 - Keras raises ValueError/TypeError/others for bad arguments
            problems.append(Problem(f"layers[{i}]", f"{layer.type}: {_keras_message(exc)}"))
            continue
        args = [tensors[r] for r in refs]
        try:
            tensors[layer.name] = instance(args if layer.input_is_list or len(args) > 1 else args[0])
        except Exception as exc:  # noqa: BLE001 - shape errors come as ValueError, some as TypeError
            shapes = ", ".join(f"{r} {_shape(tensors[r])}" for r in refs)
            problems.append(Problem(f"layers[{i}].input", f"{layer.type} cannot take {shapes}: {_keras_message(exc)}"))
            continue
        params = _count(instance, params, f"layers[{i}]", layer.type, limits, problems)

    outputs: dict[str, Any] = {}
    for name, out in spec.outputs.items():
        source = tensors.get(out.input or "")
        if source is None:
            continue
        if len(source.shape) != 2:
            problems.append(
                Problem(
                    f"outputs.{name}.input",
                    f"expected a (batch, features) tensor, {out.input!r} has shape {_shape(source)}",
                )
            )
            continue
        try:
            units = output_units(out, (labels or {}).get(name))
            head = keras.layers.Dense(units, activation=out.head_activation, name=name)
            outputs[name] = head(source)
        except Exception as exc:  # noqa: BLE001
            problems.append(Problem(f"outputs.{name}", _keras_message(exc)))
            continue
        params = _count(head, params, f"outputs.{name}", "the Dense head", limits, problems)
    if problems:
        raise SpecError(problems)
    recursion_room(limits.max_depth)
    return keras.Model(inputs=model_inputs, outputs=outputs, name=spec.name.replace(".", "_").replace("-", "_"))


def _count(layer: Any, total: int, path: str, kind: str, limits: Limits, problems: list[Problem]) -> int:
    """Add a built layer's parameters to ``total``; past the limit, raise naming the layer (nothing
    more is built: outside :func:`_without_weights` each layer allocates its weights)."""
    own = int(layer.count_params()) if layer.built else 0
    total += own
    if total > limits.max_params:
        what = f"{kind} has {own:,} parameters, bringing the model to {total:,} = {human_bytes(4 * total)} of float32 weights"
        raise SpecError([*problems, Problem(path, limits.exceeded("max_params", what))])
    return total


def output_units(out: OutputSpec, labels: list[Any] | None) -> int:
    """The width of an output's head: one unit per target column, per label of a category, one for a binary."""
    if out.type == "category":
        return len(labels) if labels else 2
    return 1 if out.type == "binary" else len(out.target)


def prediction_model(
    model: keras.Model, spec: JobSpec, target_moments: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> keras.Model:
    """The model as it is saved: ``model`` with each normalized output turned back into the target's
    units by a ``<output>_denormalization`` layer (Keras' inverted Normalization, holding the training
    split's mean and variance of the target). The layers are shared: it holds ``model``'s weights.
    ``model`` itself when no output is normalized."""
    import keras

    if not target_moments:
        return model
    outputs = dict(model.output)
    for name, (mean, variance) in target_moments.items():
        denormalize = keras.layers.Normalization(
            mean=mean, variance=variance, invert=True, name=f"{name}_denormalization"
        )
        outputs[name] = denormalize(outputs[name])
    recursion_room(Limits.from_env().max_depth)
    return keras.Model(inputs=model.input, outputs=outputs, name=model.name)


def make_optimizer(spec: JobSpec) -> keras.optimizers.Optimizer:
    """A fresh optimizer instance for the spec (arguments checked by :func:`check_optimizer`)."""
    import keras

    cls = getattr(keras.optimizers, _OPTIMIZER_CLASSES[spec.training.optimizer.name])
    return cls(**spec.training.optimizer.args)


def check_optimizer(spec: JobSpec) -> list[Problem]:
    """Problems with ``training.optimizer``'s arguments: unknown names, non-scalar or refused values."""
    import keras

    opt = spec.training.optimizer
    cls = getattr(keras.optimizers, _OPTIMIZER_CLASSES[opt.name])
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs", "name")]
    problems = []
    for key, value in opt.args.items():
        path = f"training.optimizer.{key}"
        if key not in allowed:
            problems.append(Problem(path, f"unknown argument for {cls.__name__}{did_you_mean(key, allowed)}"))
        elif not isinstance(value, (int, float, bool, str)) and value is not None:
            problems.append(Problem(path, f"expected a number, received {shown(value)}"))
    if problems:
        return problems
    try:
        make_optimizer(spec)
    except Exception as exc:  # noqa: BLE001
        problems.append(Problem("training.optimizer", f"{cls.__name__}: {_keras_message(exc)}"))
    return problems


def summarize(spec: JobSpec, model: keras.Model) -> ModelSummary:
    """The layer table of a built model (shapes and parameter counts), detached from Keras."""
    layers = []
    inbound, kinds = _layer_inputs(spec)
    # inputs first, then Keras' topological order (which interleaves inputs where they are first used)
    ordered = sorted(model.layers, key=lambda layer: type(layer).__name__ != "InputLayer")
    for layer in ordered:
        layers.append(
            LayerSummary(
                name=layer.name,
                type=kinds.get(layer.name, type(layer).__name__),
                output_shape=tuple(layer.output.shape),
                params=int(layer.count_params()) if layer.built else 0,
                inputs=inbound.get(layer.name, ()),
            )
        )
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return ModelSummary(
        name=spec.name,
        layers=tuple(layers),
        total_params=int(model.count_params()),
        trainable_params=trainable,
        inputs={k: len(v.columns) for k, v in spec.inputs.items()},
        outputs={k: int(model.output[k].shape[-1]) for k in spec.outputs},
    )


def _layer_inputs(spec: JobSpec) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """The names of the layers feeding each layer of the model :func:`build_model` makes of a resolved
    spec, and the type to show for its preprocessing sub-models.

    Read from the spec, which is what the model was built from (Keras keeps the same graph only in
    private attributes): an input feeds its preprocessing layers (``<input>_normalization``...), and
    the last of them stands in for the input wherever the input is referenced.
    """
    inputs: dict[str, tuple[str, ...]] = {name: () for name in spec.inputs}
    kinds: dict[str, str] = {}
    ends: dict[str, str] = {}
    for name, inp in spec.inputs.items():
        inbound, shown, ends[name] = layer_names(name, inp)
        inputs.update(inbound)
        kinds.update(shown)

    def source(ref: str) -> str:
        return ends.get(ref, ref)

    inputs.update({layer.name: tuple(source(ref) for ref in layer.input or ()) for layer in spec.layers})
    inputs.update({name: (source(out.input),) for name, out in spec.outputs.items() if out.input})
    return inputs, kinds


def allowed_layer_types() -> list[str]:
    """Every ``keras.layers`` class a spec may use."""
    import keras

    names = []
    for name in dir(keras.layers):
        cls = getattr(keras.layers, name)
        if isinstance(cls, type) and _refusal(name, cls) is None:
            names.append(name)
    return sorted(names)


def _refusal(name: str, cls: type) -> str | None:
    import keras

    if not issubclass(cls, keras.layers.Layer):
        return "not a layer"
    if name in _REASONS:
        return _REASONS[name]
    if name in REFUSED_LAYERS or issubclass(cls, keras.layers.Wrapper):
        return "it wraps other layer objects or runs user code"
    params = set(inspect.signature(cls.__init__).parameters)
    if params & _CALLABLE_PARAMS:
        return "takes a callable or a layer object"
    return None


def _layer_class(i: int, type_name: str, args: dict[str, Any]) -> tuple[type | None, list[Problem]]:
    import keras

    cls = getattr(keras.layers, type_name, None) if not type_name.startswith("_") else None
    if not isinstance(cls, type):
        return None, [
            Problem(
                f"layers[{i}].type", f"unknown layer type {type_name!r}{did_you_mean(type_name, allowed_layer_types())}"
            )
        ]
    why = _refusal(type_name, cls)
    if why is not None:
        return None, [Problem(f"layers[{i}].type", f"layer type {type_name!r} is refused: {why}")]
    signature = inspect.signature(cls.__init__)
    params = [p for p in signature.parameters if p not in ("self", "args", "kwargs", "name")]
    accepted = set(params) | _BASE_ARGS
    problems = []
    for key in args:
        if key not in accepted:
            problems.append(
                Problem(f"layers[{i}].{key}", f"unknown argument for {type_name}{did_you_mean(key, sorted(accepted))}")
            )
    required = [
        p.name
        for p in signature.parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in ("self", "name")
    ]
    for key in required:
        if key not in args:
            problems.append(Problem(f"layers[{i}].{key}", f"required by {type_name}, but missing"))
    return cls, problems


def _shape(tensor: Any) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in tensor.shape) + ")"


def _keras_message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = re.sub(r"^Exception encountered when calling \S+\.\s*", "", text)
    return text[:300] or type(exc).__name__
