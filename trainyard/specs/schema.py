"""The job spec as pydantic models: the shape of a spec, without its data or its Keras layers.

Everything here is free of TensorFlow. Checks that need the data live in ``data.py``, checks that
need Keras (layer types, argument names, shapes) in ``builder.py``.
"""

from __future__ import annotations

import codecs
import difflib
import math
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from trainyard import defaults
from trainyard.errors import Problem
from trainyard.specs.limits import shown

#: Name of the single input when ``inputs`` is given as a plain list of columns (Sequential shorthand).
DEFAULT_INPUT = "features"

#: Prefix of the data sources that ship with trainyard's dependencies.
BUILTIN_PREFIX = "builtin:"

#: Built-in data sets (``builtin:<name>``).
#: scikit-learn's ``load_<name>(as_frame=True).frame``: the diabetes regression, two classifications.
BUILTIN_DATASETS = ("diabetes", "breast_cancer", "iris")

#: Loss names accepted for an output (Keras' own string identifiers).
LOSSES = frozenset(
    {
        "mean_squared_error", "mse",
        "mean_absolute_error", "mae",
        "mean_absolute_percentage_error", "mape",
        "mean_squared_logarithmic_error", "msle",
        "huber", "log_cosh", "logcosh",
        "poisson",
        "binary_crossentropy",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "kl_divergence", "kld",
        "cosine_similarity",
        "hinge", "squared_hinge", "categorical_hinge",
    }
)  # fmt: skip

#: Optimizer names accepted in ``training.optimizer`` (Keras' own string identifiers).
OPTIMIZERS = frozenset(
    {"sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "ftrl", "lion", "lamb"}
)

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_SPEC_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_Name = Annotated[str, StringConstraints(pattern=_NAME)]

#: A tag: letters, digits and ``_ . : = / + -``, starting with a letter or digit.
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:=/+-]*$")


def tag_problem(tag: object) -> str | None:
    """What is wrong with ``tag`` as a job tag (None: nothing)."""
    if not isinstance(tag, str):
        return f"expected a tag (a string), received {tag!r:.80}"
    if len(tag) > defaults.MAX_TAG_LENGTH:
        return f"expected at most {defaults.MAX_TAG_LENGTH} characters, received {len(tag)}"
    if not TAG_PATTERN.match(tag):
        return f"expected letters, digits and _ . : = / + - (starting with a letter or digit), received {tag!r}"
    return None


def check_tag(tag: str) -> str:
    problem = tag_problem(tag)
    if problem:
        raise ValueError(problem)
    return tag


Tag = Annotated[str, Field(strict=True), AfterValidator(check_tag)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSpec(_Model):
    """How one table is cut into train / valid / test rows (shuffled with ``seed``)."""

    valid: float = Field(0.2, gt=0.0, lt=1.0, strict=True)
    test: float = Field(0.2, ge=0.0, lt=1.0, strict=True)
    seed: int = Field(42, strict=True)

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitSpec:
        if self.valid + self.test >= 1:
            raise ValueError(f"valid + test must be below 1, received {self.valid} + {self.test}")
        return self


class CsvSpec(_Model):
    """How CSV files are read, passed to ``pandas.read_csv``: ``sep``, ``decimal``, ``encoding``, ``na_values``."""

    sep: str = Field(",", min_length=1, max_length=5)
    decimal: str = Field(".", min_length=1, max_length=1)
    encoding: str = "utf-8"
    na_values: list[str] = Field(default_factory=list, max_length=1000)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r} (such as utf-8, latin-1, cp1252)") from None
        return value

    @model_validator(mode="after")
    def _distinct(self) -> CsvSpec:
        if self.sep == self.decimal:
            raise ValueError(f"sep and decimal must differ, received {self.sep!r} for both")
        return self

    def read_options(self) -> dict[str, Any]:
        """Keyword arguments for ``pandas.read_csv``."""
        options: dict[str, Any] = {"sep": self.sep, "decimal": self.decimal, "encoding": self.encoding}
        if self.na_values:
            options["na_values"] = list(self.na_values)
        return options


class DataSpec(_Model):
    """Where the rows come from: one ``source`` cut by ``split``, or ready-made ``train``/``valid``/``test`` files;
    ``csv`` says how CSV files are read."""

    source: str | None = None
    split: SplitSpec | None = None
    csv: CsvSpec | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    weight: str | None = Field(None, min_length=1)  # a column of per-row weights (loss and every metric)

    @model_validator(mode="after")
    def _one_form(self) -> DataSpec:
        files = [k for k in ("train", "valid", "test") if getattr(self, k) is not None]
        if self.source is not None and files:
            raise ValueError(
                f"give either `source` (with `split`) or `train`/`valid`/`test`, not both (received source and {', '.join(files)})"
            )
        if self.source is None:
            if not files:
                raise ValueError(
                    "expected `source` (a .csv/.parquet file or builtin:diabetes) or `train` and `valid` files"
                )
            if self.split is not None:
                raise ValueError("`split` only applies to `source`; with train/valid/test files the sets are given")
            missing = [k for k in ("train", "valid") if getattr(self, k) is None]
            if missing:
                raise ValueError(
                    f"with ready-made sets, `train` and `valid` are required (missing: {', '.join(missing)})"
                )
        return self

    @property
    def effective_split(self) -> SplitSpec:
        return self.split or SplitSpec()

    def files(self) -> dict[str, str]:
        """``{role: path}`` of every file read (role ``source``, ``train``, ``valid`` or ``test``), builtins excluded."""
        roles = {"source": self.source, "train": self.train, "valid": self.valid, "test": self.test}
        return {r: p for r, p in roles.items() if p is not None and not p.startswith(BUILTIN_PREFIX)}


#: Kinds of model input: ``numeric`` columns (floats) or ``category`` columns (strings or integers).
INPUT_TYPES = ("numeric", "category")

#: How a category column reaches the layers: one-hot columns or a learned embedding.
ENCODINGS = ("one_hot", "embedding")

#: How a missing number is filled in, from the training split (besides ``{constant: x}``).
IMPUTATIONS = ("mean", "median", "zero")


class ConstantFill(_Model):
    """``missing: {constant: x}``: every missing value of the input becomes ``x``."""

    constant: float = Field(allow_inf_nan=False)


class InputSpec(_Model):
    """A named model input: the columns it reads and how they are prepared inside the model.

    ``numeric`` inputs may fill in missing values (``missing``, with an optional 0/1
    ``missing_indicator`` column each) and be normalised; ``category`` inputs look each column up
    in its own vocabulary (the training split's ``max_categories`` most frequent values, an
    out-of-vocabulary bucket for the rest) and encode it one-hot or as an embedding.
    """

    columns: list[str] = Field(min_length=1)
    type: str = "numeric"
    normalize: bool = Field(False, strict=True)
    missing: str | ConstantFill | None = None
    missing_indicator: bool = Field(False, strict=True)
    encoding: str | None = None
    embedding_dim: int | None = Field(None, gt=0, le=10_000, strict=True)
    max_categories: int | None = Field(None, gt=0, le=1_000_000, strict=True)

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns: list[str]) -> list[str]:
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise ValueError(f"columns must be unique, received {', '.join(map(repr, dupes))} more than once")
        return columns

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in INPUT_TYPES:
            raise ValueError(f"unknown input type {value!r}{_choices(value, INPUT_TYPES)}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value is not None and value not in ENCODINGS:
            raise ValueError(f"unknown encoding {value!r}{_choices(value, ENCODINGS)}")
        return value

    @field_validator("missing", mode="before")
    @classmethod
    def _known_missing(cls, value: Any) -> Any:
        if value is None or isinstance(value, ConstantFill):
            return value
        if isinstance(value, str):
            if value not in IMPUTATIONS:
                raise ValueError(f"unknown missing-value rule {value!r}{_choices(value, (*IMPUTATIONS, 'constant'))}")
            return value
        if isinstance(value, dict) and set(value) == {"constant"}:
            number = value["constant"]
            if isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number):
                return ConstantFill(constant=float(number))
            raise ValueError(f"expected {{constant: <a finite number>}}, received {{constant: {number!r}}}")
        raise ValueError(f"expected mean, median, zero or {{constant: x}}, received {value!r}")

    @model_validator(mode="after")
    def _keys_fit_the_type(self) -> InputSpec:
        numeric_only = {
            "normalize": self.normalize,
            "missing": self.missing,
            "missing_indicator": self.missing_indicator,
        }
        category_only = {
            "encoding": self.encoding,
            "embedding_dim": self.embedding_dim,
            "max_categories": self.max_categories,
        }
        wrong = numeric_only if self.type == "category" else category_only
        given = [key for key, value in wrong.items() if value not in (None, False)]
        if given:
            raise ValueError(f"{', '.join(given)} does not apply to a {self.type} input (type: {self.type})")
        if self.missing_indicator and self.missing is None:
            raise ValueError(
                "missing_indicator needs `missing` (mean, median, zero or {constant: x}) to fill the values in"
            )
        if self.embedding_dim is not None and self.encoding != "embedding":
            raise ValueError("embedding_dim needs `encoding: embedding`")
        return self

    @property
    def is_category(self) -> bool:
        return self.type == "category"

    @property
    def effective_encoding(self) -> str:
        return self.encoding or "one_hot"

    def document(self) -> dict[str, Any]:
        """``columns`` and ``normalize`` always; the other keys when they differ from their defaults."""
        doc: dict[str, Any] = {"columns": list(self.columns), "normalize": self.normalize}
        extra = self.model_dump(exclude_defaults=True, exclude={"columns", "normalize"})
        doc.update(extra)
        return doc


def _choices(value: str, choices: tuple[str, ...]) -> str:
    hint = did_you_mean(value, choices)
    return hint or f" (expected one of: {', '.join(choices)})"


class LayerSpec(_Model):
    """One built-in Keras layer; every key besides ``name``, ``type`` and ``input`` is a constructor argument."""

    name: str = Field(pattern=_NAME)
    type: str = Field(min_length=1)
    input: list[str] | None = None
    input_is_list: bool = False
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_args(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        known = {k: raw[k] for k in ("name", "type", "input") if k in raw}
        if isinstance(known.get("input"), list):
            known["input_is_list"] = True
        elif isinstance(known.get("input"), str):
            known["input"] = [known["input"]]
        known["args"] = {k: v for k, v in raw.items() if k not in ("name", "type", "input")}
        return known

    @field_validator("type")
    @classmethod
    def _class_name_only(cls, value: str) -> str:
        # A dotted path or anything but a bare class name could make Keras import a module.
        if not value.isidentifier():
            raise ValueError(
                f"expected the name of a keras.layers class such as 'Dense' (module paths are refused), received {value!r}"
            )
        return value

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.input is not None:
            doc["input"] = list(self.input) if self.input_is_list else self.input[0]
        doc.update(self.args)
        return doc


#: The kinds of output a spec may declare (``type``); a regression when none is given.
OUTPUT_TYPES = ("regression", "binary", "category")

#: The loss each output type trains with when the spec names none.
DEFAULT_LOSS = {
    "regression": "mean_squared_error",
    "binary": "binary_crossentropy",
    "category": "sparse_categorical_crossentropy",
}

#: The losses each classification type accepts (a category target is fitted on label indices,
#: so ``categorical_crossentropy`` is the same loss as the sparse one).
CLASSIFICATION_LOSSES = {
    "binary": frozenset({"binary_crossentropy"}),
    "category": frozenset({"sparse_categorical_crossentropy", "categorical_crossentropy"}),
}

#: The activation of each classification head: probabilities out of the model.
HEAD_ACTIVATION = {"binary": "sigmoid", "category": "softmax"}

#: Losses that only fit a classification head; on a regression output they name the type to declare.
_NEEDS_TYPE = {
    "binary_crossentropy": "binary",
    "categorical_crossentropy": "category",
    "sparse_categorical_crossentropy": "category",
    "hinge": "binary",
    "squared_hinge": "binary",
    "categorical_hinge": "category",
}


class OutputSpec(_Model):
    """A named model output: a ``Dense`` head on ``input`` predicting ``target`` column(s).

    ``type`` chooses the head, its activation and the default loss: a regression (linear head, MSE;
    ``normalize: true`` trains on the standardized target while the saved model predicts in the
    target's units), ``binary`` (one sigmoid unit, binary cross-entropy) or ``category`` (softmax
    over the training split's labels, cross-entropy).
    """

    target: list[str] = Field(min_length=1)
    input: str | None = None
    type: str = "regression"
    normalize: bool = Field(False, strict=True)
    loss: str = Field(None, validate_default=True)  # type: ignore[assignment]  # None: the type's default
    weight: float = Field(1.0, ge=0.0, strict=True)
    activation: str | None = None

    @field_validator("target", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str, info: ValidationInfo) -> str:
        if value not in OUTPUT_TYPES:
            raise ValueError(
                f"unknown output type {value!r}{did_you_mean(value, OUTPUT_TYPES)} (expected one of: {', '.join(OUTPUT_TYPES)})"
            )
        target = info.data.get("target")
        if value != "regression" and target is not None and len(target) != 1:
            raise ValueError(f"a {value} output predicts one target column, received {len(target)}")
        return value

    @field_validator("normalize")
    @classmethod
    def _regression_only(cls, value: bool, info: ValidationInfo) -> bool:
        kind = info.data.get("type", "regression")
        if value and kind != "regression":
            raise ValueError(f"only a regression target can be normalized; this output is {kind}")
        return value

    @field_validator("loss", mode="before")
    @classmethod
    def _known_loss(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        if value is None:
            return DEFAULT_LOSS.get(kind or "regression")
        if not isinstance(value, str) or kind is None:  # a wrong type: pydantic's message, or the type's own
            return value
        if value not in LOSSES:
            raise ValueError(f"unknown loss {value!r}{did_you_mean(value, LOSSES)}")
        if kind == "regression" and value in _NEEDS_TYPE:
            raise ValueError(
                f"{value} needs a classification head, but this output is a regression (a linear head):"
                f" declare `type: {_NEEDS_TYPE[value]}`"
            )
        if kind != "regression" and value not in CLASSIFICATION_LOSSES[kind]:
            allowed = " or ".join(sorted(CLASSIFICATION_LOSSES[kind]))
            raise ValueError(f"a {kind} output trains with {allowed}, received {value!r}")
        if value == "poisson" and info.data.get("normalize"):
            raise ValueError("poisson needs the target in its own units (counts, rates): drop `normalize`")
        return value

    @field_validator("activation")
    @classmethod
    def _head_activation(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        if kind in HEAD_ACTIVATION and value is not None and value != HEAD_ACTIVATION[kind]:
            raise ValueError(
                f"a {kind} output ends in {HEAD_ACTIVATION[kind]} (its predictions are probabilities), received {value!r}"
            )
        return value

    @property
    def head_activation(self) -> str | None:
        """The activation of the output's Dense head: the type's, else the spec's; a Poisson regression
        without one gets ``exponential`` (its predictions must be positive), any other is linear."""
        if self.type in HEAD_ACTIVATION:
            return HEAD_ACTIVATION[self.type]
        if self.activation is None and self.loss == "poisson":
            return "exponential"
        return self.activation

    def document(self) -> dict[str, Any]:
        doc = self.model_dump()
        doc["target"] = self.target[0] if len(self.target) == 1 else list(self.target)
        if doc["activation"] is None:
            del doc["activation"]
        if doc["type"] == "regression":  # the defaults stay out: older documents keep their hash
            del doc["type"]
        if not doc["normalize"]:
            del doc["normalize"]
        return doc


class OptimizerSpec(_Model):
    """An optimizer by name with its constructor arguments (``learning_rate``...)."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value.lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {value!r}{did_you_mean(value.lower(), OPTIMIZERS)}")
        return value.lower()


class EarlyStoppingSpec(_Model):
    """Stop when ``output``'s headline validation metric has not improved for ``patience`` epochs;
    with ``restore_best`` the saved model holds the best epoch's weights."""

    output: str | None = None  # None: the only output (resolve_graph fills it in or names the problem)
    patience: int = Field(10, gt=0, strict=True)
    restore_best: bool = Field(True, strict=True)


class TrainingSpec(_Model):
    """How to fit: optimizer, epochs, batch size and the seed that makes a run repeatable."""

    optimizer: OptimizerSpec = OptimizerSpec(name="sgd")
    epochs: int = Field(gt=0, strict=True)
    batch_size: int = Field(32, gt=0, strict=True)
    seed: int = Field(42, strict=True)
    shuffle: bool = Field(True, strict=True)
    early_stopping: EarlyStoppingSpec | None = None

    @field_validator("optimizer", mode="before")
    @classmethod
    def _name_or_dict(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "args" not in value:
            return (
                {"name": value.get("name"), "args": {k: v for k, v in value.items() if k != "name"}}
                if "name" in value
                else value
            )
        return value

    def document(self) -> dict[str, Any]:
        doc = self.model_dump()
        opt = self.optimizer
        doc["optimizer"] = {"name": opt.name, **opt.args} if opt.args else opt.name
        if doc["early_stopping"] is None:  # left out: older documents keep their hash
            del doc["early_stopping"]
        return doc


class JobSpec(_Model):
    """A validated job spec. Build one with :func:`trainyard.specs.load_spec` (a file, YAML text or a dict)
    or :func:`trainyard.specs.spec_from_document` (a stored :meth:`document`)."""

    name: str = Field(pattern=_SPEC_NAME, max_length=100)
    data: DataSpec
    inputs: dict[_Name, InputSpec] = Field(min_length=1)
    layers: list[LayerSpec] = Field(default_factory=list)
    outputs: dict[_Name, OutputSpec] = Field(min_length=1)
    training: TrainingSpec
    #: labels of the jobs submitted from this spec (``jobs --tag``, ``compare --tag``); not part of
    #: :meth:`document`: two specs that differ only in their tags train the same model.
    tags: list[Tag] = Field(default_factory=list, max_length=defaults.MAX_TAGS)

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        if isinstance(raw.get("inputs"), list):  # Sequential shorthand: one input named "features"
            raw["inputs"] = {DEFAULT_INPUT: {"columns": raw["inputs"]}}
        layers = raw.get("layers")
        if isinstance(layers, list):
            named = []
            for i, layer in enumerate(layers):
                if isinstance(layer, dict) and "name" not in layer:
                    kind = layer.get("type")
                    kind = kind if isinstance(kind, str) and kind.isidentifier() else "layer"
                    layer = {"name": f"{_snake(kind)}_{i + 1}", **layer}
                named.append(layer)
            raw["layers"] = named
        return raw

    # -- serialisation -------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The normalised, JSON-serialisable spec (defaults filled, absolute paths): what the store keeps."""
        data = {k: v for k, v in self.data.model_dump(exclude={"csv"}).items() if v is not None}
        if self.data.csv is not None:
            data["csv"] = self.data.csv.model_dump()
        if self.data.source is not None:
            data["split"] = self.data.effective_split.model_dump()
        return {
            "name": self.name,
            "data": data,
            "inputs": {k: v.document() for k, v in self.inputs.items()},
            "layers": [layer.document() for layer in self.layers],
            "outputs": {k: v.document() for k, v in self.outputs.items()},
            "training": self.training.document(),
        }

    # -- convenience ---------------------------------------------------------------------------

    def used_columns(self) -> list[str]:
        """Every column the model reads (inputs and targets), in first-use order."""
        seen: dict[str, None] = {}
        for spec in self.inputs.values():
            seen.update(dict.fromkeys(spec.columns))
        for out in self.outputs.values():
            seen.update(dict.fromkeys(out.target))
        if self.data.weight is not None:
            seen[self.data.weight] = None
        return list(seen)

    def data_files(self) -> dict[str, Path]:
        return {role: Path(p) for role, p in self.data.files().items()}


#: Stand-ins for top-level sections that failed validation, so the layer graph can still be checked.
_STAND_INS: dict[str, Any] = {"name": "invalid", "data": {"source": "builtin:diabetes"}, "training": {"epochs": 1}}


def parse_leniently(doc: Any) -> tuple[JobSpec | None, list[Problem], set[str]]:
    """Validate ``doc``; when only ``name``/``data``/``training`` are wrong, still return a spec.

    Returns the spec (with stand-ins for the broken sections, or None when the graph sections are
    broken), the schema problems, and the names of the sections replaced by stand-ins; this lets
    the graph and data checks report their problems together with the schema's.
    """
    if not isinstance(doc, dict):
        return None, [Problem("", f"expected a mapping at the top of the spec, received {_kind(doc)}")], set()
    try:
        return JobSpec.model_validate(doc), [], set()
    except ValidationError as exc:
        problems = translate_errors(exc, doc)
        broken = {str(err["loc"][0]) if err["loc"] else "" for err in exc.errors()}
    stand_ins = dict(_STAND_INS)
    outputs = doc.get("outputs")
    if isinstance(outputs, dict) and outputs and all(isinstance(o, dict) for o in outputs.values()):
        # keep each output's `input` so that the graph is still checked
        stand_ins["outputs"] = {
            k: {"target": "-", **({"input": o["input"]} if isinstance(o.get("input"), str) else {})}
            for k, o in outputs.items()
        }
    if not broken <= set(stand_ins) | (set(doc) - set(JobSpec.model_fields)):
        return None, problems, broken
    patched = {k: v for k, v in doc.items() if k in JobSpec.model_fields}
    patched.update({k: v for k, v in stand_ins.items() if k in broken})
    try:
        return JobSpec.model_validate(patched), problems, broken
    except ValidationError:
        return None, problems, broken


# -- pydantic errors -> problems -------------------------------------------------------------------

_FIELD_NAMES = {
    (): JobSpec,
    ("data",): DataSpec,
    ("data", "split"): SplitSpec,
    ("data", "csv"): CsvSpec,
    ("training",): TrainingSpec,
    ("training", "early_stopping"): EarlyStoppingSpec,
}


def format_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("layers", 2, "units")`` -> ``layers[2].units``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = str(part)
            if not part.strip() or any(c in part for c in ".[]"):
                part = repr(part)  # an empty or dotted key stays visible in the path
            out += f".{part}" if out else part
    return out


def translate_errors(exc: ValidationError, raw: Any) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        loc = _user_loc(tuple(err["loc"]), raw)
        message = _message(err, loc)
        key = (format_path(loc), message)
        if key not in seen:
            seen.add(key)
            problems.append(Problem(*key))
    return problems


def _user_loc(loc: tuple[Any, ...], raw: Any = None) -> tuple[Any, ...]:
    """Drop pydantic's internal parts of a location (union tags, our ``args`` indirection).

    A part that is a key of the user's document at that place is kept, whatever it looks like
    (a key named ``[`` is the user's, not a pydantic tag).
    """
    out: list[Any] = []
    node = raw
    for i, part in enumerate(loc):
        is_key = isinstance(node, dict) and isinstance(part, str) and part in node
        if not is_key and isinstance(part, str) and ("[" in part or part in ("function-after", "function-before")):
            continue
        if part == "args" and i >= 2 and loc[0] == "layers":
            continue
        if part == "args" and loc[:2] == ("training", "optimizer"):
            continue
        out.append(part)
        if is_key or (isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node)):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _message(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = did_you_mean(str(loc[-1]), allowed) if allowed and loc else ""
        listing = f" (expected one of: {', '.join(sorted(allowed))})" if allowed and not hint else ""
        return f"unknown key{hint}{listing}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        # integer fields declare gt=0, float fields gt=0.0
        if kind == "greater_than" and ctx.get("gt") == 0 and type(ctx["gt"]) is int:
            return f"expected a positive integer, received {shown(value)}"
        if kind == "greater_than" and ctx.get("gt") == 0:
            return f"expected a positive number, received {shown(value)}"
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        return f"expected a number {op} {bound}, received {shown(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, received {shown(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, received {shown(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, received {shown(value)}"
    if kind == "string_type":
        return f"expected a string, received {_kind(value)} {shown(value)}"
    if kind in ("list_type",):
        return f"expected a list, received {_kind(value)} {shown(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, received {_kind(value)} {shown(value)}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s), received {_kind(value)} {shown(value)}"
    if kind == "string_too_short":
        return "expected a non-empty string"
    if kind == "string_too_long":
        return f"expected at most {ctx.get('max_length')} characters, received {len(str(value))}"
    if kind == "string_pattern_mismatch":
        return f"expected letters, digits and underscores (starting with a letter), received {shown(value)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg'][0].lower()}{err['msg'][1:]}, received {shown(value)}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model = _FIELD_NAMES.get(loc)
    if model is None and len(loc) == 2 and loc[0] == "inputs":
        model = InputSpec
    if model is None and len(loc) == 2 and loc[0] == "outputs":
        model = OutputSpec
    if model is None:
        return []
    return [name for name in model.model_fields if name not in ("input_is_list", "args")]


def did_you_mean(value: str, choices: Any) -> str:
    """`` (did you mean 'units'?)`` when a choice is close to ``value``, else an empty string."""
    close = difflib.get_close_matches(value, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
