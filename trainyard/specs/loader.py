"""From a YAML file, a YAML string or a dict to a checked :class:`JobSpec` (no TensorFlow involved)."""

from __future__ import annotations

import copy
import os
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from trainyard.errors import DataError, Problem, SpecError
from trainyard.specs.data import check_data as _check_data
from trainyard.specs.graph import check_args, resolve_graph
from trainyard.specs.limits import Limits, check_document, scan_yaml, shown
from trainyard.specs.schema import BUILTIN_PREFIX, DEFAULT_INPUT, JobSpec, TrainingSpec, parse_leniently

_SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def load_spec(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    overrides: Iterable[str] = (),
    check_data: bool = True,
) -> JobSpec:
    """Read, override, validate and (unless ``check_data=False``) check the data of a spec.

    ``source`` is a path, a YAML string or a dict. ``overrides`` are ``"training.epochs=5"`` strings,
    the value parsed as YAML. Relative data paths resolve against the spec file's folder (the current
    folder for strings and dicts). Raises :class:`SpecError` listing every problem, or
    :class:`DataError` when every problem is about the data.
    """
    limits = Limits.from_env()
    raw, base, label = _read(source, limits)
    problems: list[Problem] = []
    for override in overrides:
        problem = _apply_override(raw, override, limits)
        if problem:
            problems.append(problem)
    if problems:
        raise SpecError(problems, source=label)
    range_problems = _within_limits(raw, limits, label)
    if isinstance(raw, dict):
        _resolve_paths(raw, base)
    spec, problems, broken = parse_leniently(raw)
    problems = range_problems + problems
    if spec is None:
        problems += _layer_arg_problems(raw)
        raise SpecError(problems, source=label)
    spec, graph_problems = resolve_graph(spec)
    problems += graph_problems
    wanted = check_data and not range_problems and not broken & {"data", "outputs"}
    data_problems = _check_data(spec) if wanted else []
    if data_problems and not problems:
        raise DataError(data_problems, source=label)
    if problems or data_problems:
        raise SpecError(problems + data_problems, source=label)
    return spec


def spec_from_document(doc: Mapping[str, Any]) -> JobSpec:
    """Rebuild a spec from :meth:`JobSpec.document` (what the store keeps), as the worker does.

    The document's paths are already absolute and its data is not read (the worker checks the data
    itself, against the roots and the fingerprint recorded at submit); no TensorFlow. Raises
    :class:`SpecError` listing every problem, as :func:`load_spec` does.
    """
    range_problems = _within_limits(doc, Limits.from_env(), None)
    spec, problems, _ = parse_leniently(dict(doc) if isinstance(doc, Mapping) else doc)
    problems = range_problems + problems
    if problems or spec is None:
        raise SpecError(problems)
    spec, problems = resolve_graph(spec)
    if problems:
        raise SpecError(problems)
    return spec


def _within_limits(doc: Any, limits: Limits, label: str | None) -> list[Problem]:
    """The document's out-of-range integers; raises :class:`SpecError` when it crosses a size limit."""
    try:
        return check_document(doc, limits)
    except SpecError as exc:
        raise SpecError(exc.problems, source=label) from None


def _layer_arg_problems(raw: Any) -> list[Problem]:
    """Static argument problems of the layers, for a spec whose schema failed elsewhere."""
    layers = raw.get("layers") if isinstance(raw, dict) else None
    if not isinstance(layers, list):
        return []
    problems: list[Problem] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, dict):
            problems += check_args(i, {k: v for k, v in layer.items() if k not in ("name", "type", "input")})
    return problems


def _read(source: str | os.PathLike[str] | Mapping[str, Any], limits: Limits) -> tuple[Any, Path, str | None]:
    """The raw document, the folder relative paths resolve against, and a label for messages."""
    if isinstance(source, Mapping):
        _within_limits(source, limits, None)  # before the deep copy walks it
        return copy.deepcopy(dict(source)), Path.cwd(), None
    if isinstance(source, os.PathLike) or (
        # a one-line string without ":" cannot be a YAML spec, so it is a (maybe mistyped) path
        isinstance(source, str)
        and "\n" not in source
        and (source.endswith(_SPEC_SUFFIXES) or ":" not in source or Path(source).is_file())
    ):
        path = Path(source).expanduser()
        return read_yaml(path, limits), path.resolve().parent, str(path)
    if isinstance(source, str):
        return parse_yaml(source, None, limits), Path.cwd(), None
    raise SpecError(Problem("", f"expected a path, a YAML string or a mapping, received {type(source).__name__}"))


def read_yaml(path: str | os.PathLike[str], limits: Limits | None = None) -> Any:
    """A YAML file (a spec, a sweep file) as plain Python values, within the spec limits.

    At most ``limits.max_bytes`` are read (a device or a FIFO never fills the memory); raises
    :class:`SpecError` naming the file for a missing, unreadable, oversized or invalid file.
    """
    limits = limits or Limits.from_env()
    path = Path(path).expanduser()
    try:
        with path.open("rb") as file:
            data = file.read(limits.max_bytes + 1)
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise SpecError(Problem("", f"spec file not found: {str(path)!r}")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(Problem("", f"cannot read spec file {str(path)!r}: {exc}")) from None
    if len(data) > limits.max_bytes:
        message = limits.exceeded("max_bytes", f"the file is larger than {limits.max_bytes:,} bytes")
        raise SpecError(Problem("", message), source=str(path))
    return parse_yaml(text, str(path), limits)


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml parses ~10x faster
    """SafeLoader (libyaml's when installed) that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    # keys merged in with `<<: *shared` may be set again by the mapping itself; its own keys only once
    own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    merged = len(node.value) - own
    result: dict[Any, Any] = {}
    own_keys: set[Any] = set()
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(None, None, "a mapping or a list as a key", key_node.start_mark)
        if i >= merged:
            if key in own_keys:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {shown(key)}", key_node.start_mark)
            own_keys.add(key)
        result[key] = loader.construct_object(value_node, deep=deep)
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, label: str | None = None, limits: Limits | None = None) -> Any:
    """YAML text as plain Python values, checked against the spec limits before anything is built
    (:func:`~trainyard.specs.limits.scan_yaml`); raises :class:`SpecError` (``label`` names the file)."""
    try:
        scan_yaml(text, limits)
        return yaml.load(text, Loader=_StrictLoader)
    except SpecError as exc:
        raise SpecError(exc.problems, source=label) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        what = exc.problem or exc.context or "invalid YAML"
        raise SpecError(Problem(where, f"YAML syntax error: {what}"), source=label) from None
    except yaml.YAMLError as exc:
        raise SpecError(Problem("", f"YAML syntax error: {exc}"), source=label) from None


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    data = raw.get("data")
    if not isinstance(data, dict):
        return
    for role in ("source", "train", "valid", "test"):
        value = data.get(role)
        if isinstance(value, str) and value and not value.startswith(BUILTIN_PREFIX):
            data[role] = str((base / Path(value).expanduser()).resolve())


def read_document(source: str | os.PathLike[str]) -> tuple[Any, Path, str]:
    """The raw YAML document of a file, read as specs are (safe, bounded, duplicate keys refused),
    with the folder its relative paths resolve against and its name for messages. Raises :class:`SpecError`."""
    path = Path(source).expanduser()
    return read_yaml(path), path.resolve().parent, str(path)


def set_path(raw: Any, key: str, value: Any) -> Problem | None:
    """Set the field at ``a.b[2].c`` of a raw spec document to ``value``; a :class:`Problem` if the path
    cannot be followed.

    Paths reach into the shorthands as a user means them: with ``optimizer: sgd`` (or no optimizer),
    ``training.optimizer.learning_rate`` sets that optimizer's learning rate; with ``inputs`` given
    as a list of columns, ``inputs.features.normalize`` sets the one input's field.
    """
    parts = _split_path(key)
    if parts is None or not isinstance(raw, dict):
        return Problem(key, "cannot parse this path (use dots and [index], e.g. layers[0].units)")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                return Problem(
                    key,
                    f"no item [{part}] here (the spec has {len(node) if isinstance(node, list) else 'no list'} items)",
                )
            if last:
                node[part] = value
            else:
                node = node[part]
        else:
            if not isinstance(node, dict):
                return Problem(key, f"cannot set {part!r} inside a {type(node).__name__}")
            if last:
                node[part] = value
            else:
                node[part] = _expand_shorthand(tuple(parts[: i + 1]), node.get(part))
                node = node[part]
    return None


def _expand_shorthand(path: tuple[str | int, ...], value: Any) -> Any:
    """The long form of a shorthand that a path goes through (``optimizer: sgd`` -> ``{name: sgd}``)."""
    if path == ("training", "optimizer"):
        if value is None:
            return {"name": TrainingSpec.model_fields["optimizer"].default.name}
        if isinstance(value, str):
            return {"name": value}
    if path == ("inputs",) and isinstance(value, list):
        return {DEFAULT_INPUT: {"columns": value}}
    return {} if value is None else value


def _apply_override(raw: Any, override: str, limits: Limits) -> Problem | None:
    """Set ``a.b[2].c=value`` in the raw document; the value is parsed as YAML, within the limits."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        return Problem(override, "expected an override of the form path=value, e.g. training.epochs=5")
    try:
        scan_yaml(text, limits, prefix=key)
        value = yaml.load(text, Loader=_StrictLoader)
    except SpecError as exc:
        return exc.problems[0]
    except yaml.YAMLError:
        value = text
    return set_path(raw, key, value)


def split_path(key: str) -> list[str | int] | None:
    """``"layers[0].units"`` -> ``["layers", 0, "units"]``; None when it cannot be parsed."""
    return _split_path(key)


def _split_path(key: str) -> list[str | int] | None:
    parts: list[str | int] = []
    for chunk in key.split("."):
        name, _, rest = chunk.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, close, rest = rest.partition("]")
            digits = index.removeprefix("-")
            # ASCII digits only ("²" is a digit to isdigit, not to int), and never more than an index can have
            if not close or not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
                return None
            parts.append(int(index))
            rest = rest.removeprefix("[")
        if not name and not parts:
            return None
    return parts
