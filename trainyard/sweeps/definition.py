"""The sweep file: its schema, its check against the base spec, and the normalised definition the store keeps.

A sweep file names a base spec, a search method, a budget, an objective and the spec fields to vary
(``parameters``, spec paths as in ``--set``), and optionally how to prune. :func:`load_sweep` reads it
through the specs' own bounded YAML reading, checks every field, the base spec, and each parameter's
extreme values applied to the base spec (schema, layer graph and, for a few, the Keras model), and
returns a :class:`SweepPlan`: everything needed to store the sweep, nothing stored yet.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainyard import defaults, metrics
from trainyard.errors import Problem, SpecError

#: Most trials one sweep may ask for, and most points of a grid.
MAX_TRIALS = 10_000

#: Most parameters of one sweep, and most values of one ``choice``.
MAX_PARAMETERS = 50
MAX_CHOICES = 1_000

#: Most Keras models built to check parameter values at submit (each costs a fraction of a second).
MAX_MODEL_CHECKS = 32

#: Significant digits a float parameter keeps (float32, what Keras holds a learning rate in, keeps ~7).
FLOAT_DIGITS = 7

Scalar = bool | int | float | str | None


def _check_tag(tag: str) -> str:
    from trainyard.specs.schema import check_tag  # the specs load when a sweep file is read, not on import

    return check_tag(tag)


_Tag = Annotated[str, Field(strict=True), AfterValidator(_check_tag)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParameterSpec(_Model):
    """One parameter's values: exactly one of ``uniform``, ``log_uniform``, ``int_uniform`` (``[low,
    high]``) or ``choice`` (a list); ``step`` for the two linear ranges."""

    uniform: tuple[float, float] | None = None
    log_uniform: tuple[float, float] | None = None
    int_uniform: tuple[int, int] | None = None
    choice: list[Scalar] | None = Field(None, min_length=1, max_length=MAX_CHOICES)
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> ParameterSpec:
        kinds = [k for k in ("uniform", "log_uniform", "int_uniform", "choice") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "expected exactly one of uniform, log_uniform, int_uniform or choice"
                + (f", received {' and '.join(kinds)}" if kinds else "")
            )
        kind = kinds[0]
        if kind != "choice":
            low, high = getattr(self, kind)
            if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
                raise ValueError(f"{kind}: expected [low, high] with low < high, received [{low}, {high}]")
            if kind == "log_uniform" and low <= 0:
                raise ValueError(f"log_uniform: expected a positive low end, received {low}")
        if self.step is not None and kind not in ("uniform", "int_uniform"):
            raise ValueError(f"step only applies to uniform and int_uniform, not {kind}")
        if kind == "int_uniform" and self.step is not None and self.step != int(self.step):
            raise ValueError(f"step of an int_uniform: expected an integer, received {self.step}")
        if kind == "choice":
            assert self.choice is not None
            if len({_canonical(v) for v in self.choice}) != len(self.choice):
                raise ValueError("choice: every value once")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("uniform", "log_uniform", "int_uniform", "choice") if getattr(self, k) is not None)


class ObjectiveSpec(_Model):
    """What a trial scores: ``metric`` of each output in ``outputs``, weighted (the spec's output weights
    when omitted); ``metric`` defaults to the outputs' headline metric."""

    metric: str | None = None
    outputs: dict[str, float] | None = Field(None, min_length=1)

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in metrics.METRICS:
            raise ValueError(f"unknown metric {value!r}; expected one of {', '.join(metrics.METRICS)}")
        return value

    @field_validator("outputs")
    @classmethod
    def _weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, weight in (value or {}).items():
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of {name!r}: expected a number >= 0, received {weight}")
        if value is not None and not any(value.values()):
            raise ValueError("expected at least one output with a weight above 0")
        return value


class PruneSpec(_Model):
    """How trials are stopped early: ``asha`` (successive halving) or ``median``."""

    method: Literal["asha", "median", "none"]
    min_epochs: int | None = Field(None, ge=1, le=1_000_000)  # asha: epochs every trial runs (the first rung)
    reduction_factor: int | None = Field(None, ge=2, le=100)  # asha: 1 in this many goes on at each rung
    warmup_epochs: int | None = Field(None, ge=0, le=1_000_000)  # median: no pruning before this epoch
    min_trials: int | None = Field(None, ge=1, le=MAX_TRIALS)  # median: finished trials before any pruning

    @model_validator(mode="after")
    def _keys_of_method(self) -> PruneSpec:
        allowed = {
            "asha": {"min_epochs", "reduction_factor"},
            "median": {"warmup_epochs", "min_trials"},
            "none": set(),
        }[self.method]
        given = {
            k for k in ("min_epochs", "reduction_factor", "warmup_epochs", "min_trials") if getattr(self, k) is not None
        }
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"{', '.join(extra)} do(es) not apply to prune method {self.method!r}")
        return self

    def normalised(self) -> dict[str, Any] | None:
        if self.method == "asha":
            return {
                "method": "asha",
                "min_epochs": self.min_epochs or 1,
                "reduction_factor": self.reduction_factor or 3,
            }
        if self.method == "median":
            return {
                "method": "median",
                "warmup_epochs": self.warmup_epochs if self.warmup_epochs is not None else 0,
                "min_trials": self.min_trials or 5,
            }
        return None


class SweepFile(_Model):
    """The schema of a sweep file (see the README's Sweeps section)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    spec: str = Field(min_length=1)
    method: Literal["grid", "random", "tpe"]
    trials: int | None = Field(None, ge=1, le=MAX_TRIALS, strict=True)
    parallel: int = Field(1, ge=1, le=1_000, strict=True)
    seed: int = Field(0, ge=0, le=2**31 - 1, strict=True)
    objective: ObjectiveSpec = ObjectiveSpec()
    parameters: dict[str, ParameterSpec] = Field(min_length=1, max_length=MAX_PARAMETERS)
    prune: PruneSpec | None = None
    #: Labels every trial carries (with the base spec's own ``tags``): ``jobs --tag``, ``compare --tag``.
    tags: list[_Tag] = Field(default_factory=list, max_length=defaults.MAX_TAGS)

    @field_validator("prune", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        return None if value in ("none", None, False) else value

    @model_validator(mode="after")
    def _budget(self) -> SweepFile:
        if self.method != "grid" and self.trials is None:
            raise ValueError(f"trials: required for method {self.method} (how many trials to run)")
        return self


@dataclass(frozen=True)
class Parameter:
    """A parameter as the sweep samples it: ``float``, ``int`` (a range) or ``choice`` (a list)."""

    path: str
    kind: str  # "float" | "int" | "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Scalar, ...] = ()

    def document(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"kind": "choice", "choices": list(self.choices)}
        return {"kind": self.kind, "low": self.low, "high": self.high, "log": self.log, "step": self.step}

    @classmethod
    def from_document(cls, path: str, doc: Mapping[str, Any]) -> Parameter:
        if doc["kind"] == "choice":
            return cls(path, "choice", choices=tuple(doc["choices"]))
        return cls(path, doc["kind"], low=doc["low"], high=doc["high"], log=bool(doc["log"]), step=doc.get("step"))

    def grid_values(self) -> list[Scalar] | None:
        """Every value of a finite parameter (a choice, an int range, a stepped float range), else None."""
        if self.kind == "choice":
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.kind == "int" and not self.log:
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.kind == "float" and self.step is not None and not self.log:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9))
            return [self.round(self.low + i * self.step) for i in range(n + 1)]
        return None

    def extremes(self) -> list[Scalar]:
        """The values a submit checks against the base spec: both ends of a range, every choice."""
        if self.kind == "choice":
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        return [self.round(self.low), self.round(self.high)]

    def round(self, value: Any) -> Scalar:
        """A sampled value as the spec holds it: ints as ints, floats to :data:`FLOAT_DIGITS` digits."""
        if self.kind == "int":
            return int(round(value))
        if self.kind == "float":
            return float(f"{float(value):.{FLOAT_DIGITS}g}")
        return value


@dataclass(frozen=True)
class SweepDefinition:
    """A checked sweep, as the store keeps it (``SweepRecord.definition``)."""

    method: str
    trials: int | None
    parallel: int
    seed: int
    metric: str
    outputs: dict[str, float]
    parameters: tuple[Parameter, ...]
    prune: dict[str, Any] | None
    spec_file: str

    @property
    def direction(self) -> str:
        return "maximize" if metrics.metric(self.metric).higher_is_better else "minimize"

    def grid(self) -> list[dict[str, Scalar]]:
        """Every point of a grid sweep, in a fixed order (parameters by path)."""
        names = sorted(p.path for p in self.parameters)
        values = {p.path: p.grid_values() or [] for p in self.parameters}
        return [dict(zip(names, point)) for point in itertools.product(*(values[n] for n in names))]

    @property
    def total(self) -> int:
        """How many trials the sweep runs: ``trials``, or every point of a grid."""
        if self.method == "grid":
            return math.prod(len(p.grid_values() or []) for p in self.parameters)
        assert self.trials is not None
        return self.trials

    def document(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "trials": self.trials,
            "parallel": self.parallel,
            "seed": self.seed,
            "objective": {"metric": self.metric, "outputs": dict(self.outputs)},
            "parameters": {p.path: p.document() for p in self.parameters},
            "prune": dict(self.prune) if self.prune else None,
            "spec_file": self.spec_file,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> SweepDefinition:
        return cls(
            method=doc["method"],
            trials=doc.get("trials"),
            parallel=int(doc.get("parallel") or 1),
            seed=int(doc.get("seed") or 0),
            metric=doc["objective"]["metric"],
            outputs={str(k): float(v) for k, v in doc["objective"]["outputs"].items()},
            parameters=tuple(Parameter.from_document(path, p) for path, p in doc["parameters"].items()),
            prune=dict(doc["prune"]) if doc.get("prune") else None,
            spec_file=str(doc.get("spec_file", "")),
        )


@dataclass(frozen=True)
class SweepPlan:
    """A checked sweep file, ready to store: its name, definition, base spec document and the
    submission context (data fingerprint, data roots) every trial shares."""

    name: str
    definition: SweepDefinition
    spec: dict[str, Any]
    context: dict[str, Any]


def is_sweep_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a YAML mapping with a ``parameters`` and a ``spec`` key (a sweep, not a spec)."""
    from trainyard.specs.loader import read_document

    try:
        raw, _, _ = read_document(path)
    except SpecError:
        return False
    return isinstance(raw, dict) and "parameters" in raw and isinstance(raw.get("spec"), str)


def load_sweep(
    path: str | os.PathLike[str], data_roots: tuple[Path, ...], roots_label: str, *, build: bool = True
) -> SweepPlan:
    """Read and check a sweep file and its base spec; raises :class:`SpecError` naming every problem
    with its path (nothing is stored). ``build=False`` skips building Keras models (tests, dry runs)."""
    from trainyard.specs import data_fingerprint, load_spec, outside_roots, validate_spec
    from trainyard.specs.loader import read_document
    from trainyard.specs.schema import translate_errors

    raw, base, label = read_document(path)
    if not isinstance(raw, dict):
        raise SpecError(Problem("", "expected a mapping at the top of the sweep file"), source=label)
    try:
        sweep = SweepFile.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(translate_errors(exc, raw), source=label) from None
    spec_path = (base / Path(sweep.spec).expanduser()).resolve()
    try:
        spec = load_spec(spec_path)
        problems = outside_roots(spec, data_roots, roots_label)
        if problems:
            raise SpecError(problems)
        if build:
            validate_spec(spec)
    except SpecError as exc:
        raise SpecError(
            [Problem(f"spec ({spec_path})" + (f": {p.path}" if p.path else ""), p.message) for p in exc.problems],
            source=label,
        ) from None
    document = spec.document()
    problems = []

    spec_outputs = {name: out.weight for name, out in spec.outputs.items()}
    weights = dict(sweep.objective.outputs) if sweep.objective.outputs is not None else spec_outputs
    for name in weights:
        if name not in spec_outputs:
            problems.append(
                Problem(f"objective.outputs.{name}", f"no such output in the spec (it has {', '.join(spec_outputs)})")
            )
    metric, metric_problems = _objective_metric(
        sweep.objective.metric, document, [n for n in weights if n in spec_outputs]
    )
    problems += metric_problems

    parameters = []
    for key, given in sweep.parameters.items():
        parameter = _parameter(key, given, document)
        if isinstance(parameter, Problem):
            problems.append(parameter)
            continue
        parameters.append(parameter)
        if sweep.method == "grid" and parameter.grid_values() is None:
            problems.append(
                Problem(
                    f"parameters.{key}",
                    "a grid needs values to list: a choice, an int_uniform or a uniform with a step",
                )
            )
    definition = SweepDefinition(
        method=sweep.method,
        trials=sweep.trials if sweep.method != "grid" else None,
        parallel=sweep.parallel,
        seed=sweep.seed,
        metric=metric,
        outputs=weights,
        parameters=tuple(parameters),
        prune=sweep.prune.normalised() if sweep.prune else None,
        spec_file=str(spec_path),
    )
    if not problems and sweep.method == "grid":
        sizes = [len(p.grid_values() or []) for p in parameters]
        if math.prod(sizes) > MAX_TRIALS:
            problems.append(Problem("parameters", f"the grid has {math.prod(sizes)} points, more than {MAX_TRIALS}"))
    if not problems:
        problems += _check_extremes(document, parameters, build=build)
    if problems:
        raise SpecError(problems, source=label)
    context: dict[str, Any] = {
        "data_fingerprint": data_fingerprint(spec),
        "data_roots": [str(root) for root in data_roots],
    }
    tags = list(dict.fromkeys([*spec.tags, *sweep.tags]))
    if len(tags) > defaults.MAX_TAGS:
        raise SpecError(
            Problem("tags", f"at most {defaults.MAX_TAGS} tags per trial, received {len(tags)} with the spec's"),
            source=label,
        )
    if tags:
        context["tags"] = tags
    return SweepPlan(name=sweep.name, definition=definition, spec=document, context=context)


def _objective_metric(given: str | None, document: Mapping[str, Any], outputs: list[str]) -> tuple[str, list[Problem]]:
    """The objective's metric (``given``, or the outputs' common headline metric) and the problems:
    a metric some weighted output does not report, outputs whose headline metrics differ."""
    reported = {}
    for name in outputs:
        entry = document.get("outputs", {}).get(name, {})
        kind = metrics.output_type(document, name)
        reported[name] = (kind, metrics.names(kind, entry.get("loss") if isinstance(entry, Mapping) else None))
    if given is None:
        headlines = sorted({metrics.headline(kind) for kind, _ in reported.values()})
        if len(headlines) > 1:
            return headlines[0], [
                Problem("objective.metric", f"the outputs' headline metrics differ ({', '.join(headlines)}): name one")
            ]
        return (headlines[0] if headlines else "mse"), []
    problems = [
        Problem("objective.metric", f"output {name!r} ({kind}) reports {', '.join(names)}, not {given!r}")
        for name, (kind, names) in reported.items()
        if given not in names
    ]
    return given, problems


def trial_document(base: Mapping[str, Any], name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The spec document of one trial: the base spec with ``params`` set, named ``name``, normalised
    as the store keeps specs. An invalid combination is returned as set (its job fails with the problem)."""
    from trainyard.specs import load_spec
    from trainyard.specs.loader import set_path

    raw = _copy(base)
    raw["name"] = name
    for path, value in params.items():
        set_path(raw, path, value)
    try:
        return load_spec(raw, check_data=False).document()
    except SpecError:
        return raw


def _parameter(key: str, given: ParameterSpec, document: Mapping[str, Any]) -> Parameter | Problem:
    from trainyard.specs.loader import split_path

    if split_path(key) is None:
        return Problem(f"parameters.{key}", "cannot parse this path (use dots and [index], e.g. layers[0].units)")
    kind = given.kind
    if kind == "choice":
        return Parameter(key, "choice", choices=tuple(given.choice or ()))
    low, high = getattr(given, kind)
    current = _value_at(document, key)
    integer = kind == "int_uniform" or (
        isinstance(current, int)
        and not isinstance(current, bool)
        and float(low).is_integer()
        and float(high).is_integer()
    )
    if integer:
        if not (float(low).is_integer() and float(high).is_integer()):
            return Problem(f"parameters.{key}", f"expected integer ends for an integer field, received [{low}, {high}]")
        step = int(given.step) if given.step is not None else None
        return Parameter(key, "int", low=int(low), high=int(high), log=kind == "log_uniform", step=step)
    return Parameter(key, "float", low=float(low), high=float(high), log=kind == "log_uniform", step=given.step)


def _check_extremes(document: Mapping[str, Any], parameters: list[Parameter], *, build: bool) -> list[Problem]:
    """Each parameter's extreme values applied to the base spec, one at a time: every problem, with
    the parameter and the value that caused it."""
    from trainyard.specs import load_spec, validate_spec
    from trainyard.specs.loader import set_path

    problems: list[Problem] = []
    builds = 0
    for parameter in parameters:
        for value in parameter.extremes():
            raw = _copy(document)
            where = f"parameters.{parameter.path}"
            problem = set_path(raw, parameter.path, value)
            if problem is not None:
                problems.append(Problem(where, problem.message))
                break
            try:
                spec = load_spec(raw, check_data=False)
                if build and builds < MAX_MODEL_CHECKS:
                    builds += 1
                    validate_spec(spec)
            except SpecError as exc:
                for p in exc.problems:
                    inner = f"{p.path}: " if p.path and p.path != parameter.path else ""
                    problems.append(Problem(where, f"with {value!r}: {inner}{p.message}"))
                break
    return problems


def _value_at(document: Mapping[str, Any], key: str) -> Any:
    from trainyard.specs.loader import split_path

    node: Any = document
    for part in split_path(key) or []:
        in_list = isinstance(part, int) and isinstance(node, list) and -len(node) <= part < len(node)
        in_dict = isinstance(part, str) and isinstance(node, dict) and part in node
        if not (in_list or in_dict):
            return None
        node = node[part]
    return node


def _copy(document: Mapping[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(dict(document))


def _canonical(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)
