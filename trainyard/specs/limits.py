"""What one spec may cost before it is refused: bytes, values after alias expansion, nesting, layers,
the length of any string and any number, and the range of any integer.

Specs come from other people, downloads and generators. A 1 KB YAML file whose nine anchors of ten
aliases each expand to 10^9 values, a number of 5,000 digits, 5,000 nested lists in a ``--set``
value: each must cost a clear error, not minutes and gigabytes. So the limits are checked where a
document enters, before anything walks it:

- YAML text (a spec file, a YAML string, a ``--set`` value, a sweep file) is checked by
  :func:`scan_yaml` on the parser's events, before any object is built: the size of every anchored
  node is counted once and added at each of its aliases, so the cost is the file's real size
  whatever it expands to. Aliases stay legitimate (shared layer settings); only the expanded size
  counts against the limit.
- A Python document (a dict given to ``load_spec``, the stored document a worker reads back) is
  checked by :func:`check_document`, a walk that stops at the first limit it crosses, so it costs at
  most ``max_nodes`` steps whatever the document shares or how deep it goes.

Every limit has a default in :mod:`trainyard.defaults` and an environment variable that raises it
(:class:`Limits`). Messages show a value by :func:`shown`: a short prefix and its size, never the
``repr`` of a huge value (Python refuses to print an int of more than 4,300 digits).
"""

from __future__ import annotations

import os
import re
import reprlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from trainyard import defaults
from trainyard.errors import Problem, SpecError, cut

#: Every integer in a spec lies in this range: PostgreSQL's INTEGER is 32-bit (SQLite's is 64-bit),
#: and TensorFlow and numpy take such integers as C ints.
INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

#: At most this many out-of-range integers are listed (the rest would only repeat the message).
_MAX_RANGE_PROBLEMS = 20


@dataclass(frozen=True)
class Limits:
    """The limits in force: each from its environment variable, else its default in :mod:`trainyard.defaults`."""

    max_bytes: int = defaults.SPEC_MAX_BYTES
    max_nodes: int = defaults.SPEC_MAX_NODES
    max_nesting: int = defaults.SPEC_MAX_NESTING
    max_layers: int = defaults.SPEC_MAX_LAYERS
    max_depth: int = defaults.SPEC_MAX_DEPTH
    max_params: int = defaults.SPEC_MAX_PARAMS
    max_string: int = defaults.SPEC_MAX_STRING_CHARS
    max_number: int = defaults.SPEC_MAX_NUMBER_CHARS

    #: The environment variable of each limit, by field name.
    ENV = {
        "max_bytes": "TRAINYARD_SPEC_MAX_BYTES",
        "max_nodes": "TRAINYARD_SPEC_MAX_NODES",
        "max_nesting": "TRAINYARD_SPEC_MAX_NESTING",
        "max_layers": "TRAINYARD_SPEC_MAX_LAYERS",
        "max_depth": "TRAINYARD_SPEC_MAX_DEPTH",
        "max_params": "TRAINYARD_SPEC_MAX_PARAMS",
        "max_string": "TRAINYARD_SPEC_MAX_STRING",
        "max_number": "TRAINYARD_SPEC_MAX_NUMBER",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if environ is None else environ
        values = {}
        for name, var in cls.ENV.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            try:
                value = int(raw.replace("_", ""))
            except ValueError:
                value = 0
            if value <= 0:
                raise SpecError(Problem("", f"{var}: expected a positive integer, received {shown(raw)}"))
            values[name] = value
        return cls(**values)

    def exceeded(self, field: str, what: str) -> str:
        """``<what> (the limit is 4,096; TRAINYARD_SPEC_MAX_STRING raises it)``."""
        return f"{what} (the limit is {getattr(self, field):,}; {self.ENV[field]} raises it)"


# -- showing values in messages --------------------------------------------------------------------


class _ShortRepr(reprlib.Repr):
    """reprlib's bounded repr, with ints of any size shown by their digit count instead of converted."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 2
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = 4
        self.maxstring = self.maxother = self.maxlong = defaults.MESSAGE_VALUE_CHARS

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 3.3 * defaults.MESSAGE_VALUE_CHARS:
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1:,} digits>"
        return super().repr_int(x, level)

    def repr_str(self, x: str, level: int) -> str:
        if len(x) > defaults.MESSAGE_VALUE_CHARS:
            return repr(x[: defaults.MESSAGE_VALUE_CHARS - 3]) + f"... ({len(x):,} characters)"
        return repr(x)


_short_repr = _ShortRepr()


def shown(value: Any) -> str:
    """A value as an error message shows it: its ``repr`` when short, else a prefix and its size."""
    try:
        return _short_repr.repr(value)
    except Exception:  # noqa: BLE001 - a hostile object's __repr__ must not break the message
        return f"<{type(value).__name__}>"


# -- YAML text -------------------------------------------------------------------------------------

_resolver = yaml.resolver.Resolver()
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_LOOKS_NUMERIC = re.compile(r"[-+]?[0-9.]")


@dataclass
class _Frame:
    """One open mapping or list while scanning YAML events."""

    mapping: bool
    anchor: str | None
    start: int  # values counted before this collection
    index: int = 0  # lists: index of the next item
    at_key: bool = True  # mappings: the next node is a key
    key: Any = "?"  # mappings: the key of the value being read
    height: int = 1  # levels of nesting this collection holds (itself included)


def scan_yaml(text: str, limits: Limits | None = None, *, prefix: str = "") -> None:
    """Check YAML text against the limits from its parser's events, before any object is built.

    Raises :class:`SpecError` with one problem naming where the limit is crossed (``prefix`` is put
    before the path: ``training.epochs`` for a ``--set`` value). YAML syntax errors are left to the
    caller's loader (``yaml.YAMLError`` propagates).
    """
    limits = limits or Limits.from_env()
    if len(text) > limits.max_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise SpecError(
            Problem(prefix, limits.exceeded("max_bytes", f"{len(text.encode('utf-8', 'replace')):,} bytes"))
        )
    try:
        _scan_events(yaml.parse(text, Loader=_FAST_LOADER), limits, prefix)
    except yaml.YAMLError as exc:
        if _FAST_LOADER is yaml.SafeLoader or "maximum nesting depth" not in str(exc):
            raise
        # libyaml 0.2.6 (PyYAML 6.0.4's wheels) stops at 1,000 levels while scanning ahead, before
        # it yields the events that would show where our own, lower limit is crossed. PyYAML's own
        # parser has no such cap and looks at most 1,024 characters ahead: scan the text again
        # with it, so the problem names its path (the text is at most max_bytes long).
        _scan_events(yaml.parse(text, Loader=yaml.SafeLoader), limits, prefix)
        raise


#: libyaml's parser when PyYAML was built with it (about 10x faster), else PyYAML's own.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scan_events(events: Any, limits: Limits, prefix: str) -> None:
    """The body of :func:`scan_yaml`: walk the parser's ``events``, raising at the first limit crossed."""
    stack: list[_Frame] = []
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, nesting) of the node it names
    count = 0

    def fail(message: str) -> None:
        raise SpecError(Problem(_join(prefix, [_part(f) for f in stack]), message))

    def placed(height: int) -> None:
        """A node of ``height`` levels is complete: the enclosing collection moves on."""
        if not stack:
            return
        parent = stack[-1]
        parent.height = max(parent.height, height + 1)
        if parent.mapping:
            parent.at_key = not parent.at_key
        else:
            parent.index += 1

    for event in events:
        if isinstance(event, yaml.ScalarEvent):
            count += 1
            value = event.value
            if stack and stack[-1].mapping and stack[-1].at_key:
                stack[-1].key = value
            if (
                len(value) > limits.max_number
                and event.implicit[0]
                and _LOOKS_NUMERIC.match(value)
                and _resolver.resolve(yaml.ScalarNode, value, (True, False)) in _NUMBER_TAGS
            ):
                fail(limits.exceeded("max_number", f"a number of {len(value):,} characters"))
            if len(value) > limits.max_string:
                fail(limits.exceeded("max_string", f"a string of {len(value):,} characters"))
            if event.anchor:
                anchors[event.anchor] = (1, 0)
            height = 0
        elif isinstance(event, yaml.AliasEvent):
            if stack and stack[-1].mapping and stack[-1].at_key:
                stack[-1].key = f"*{event.anchor}"
            if event.anchor not in anchors:
                if any(frame.anchor == event.anchor for frame in stack):
                    fail(f"the alias *{event.anchor} refers to a node that contains it (a recursive alias)")
                continue  # an undefined alias: the loader reports it with its line
            size, height = anchors[event.anchor]
            count += size
            if len(stack) + height > limits.max_nesting:
                fail(
                    limits.exceeded(
                        "max_nesting", f"nested {len(stack) + height:,} levels deep once *{event.anchor} is expanded"
                    )
                )
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            count += 1
            if count > limits.max_nodes:
                fail(limits.exceeded("max_nodes", "too many values once aliases are expanded"))
            if stack and stack[-1].mapping and stack[-1].at_key:
                stack[-1].key = "?"
            stack.append(_Frame(isinstance(event, yaml.MappingStartEvent), event.anchor, count - 1))
            if len(stack) > limits.max_nesting:
                fail(limits.exceeded("max_nesting", f"nested {len(stack):,} levels deep"))
            continue
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            frame = stack.pop()
            height = frame.height
            if frame.anchor:
                anchors[frame.anchor] = (count - frame.start, height)
        else:
            continue
        if count > limits.max_nodes:
            fail(limits.exceeded("max_nodes", "too many values once aliases are expanded"))
        placed(height)


def _part(frame: _Frame) -> Any:
    if not frame.mapping:
        return frame.index
    return frame.key if isinstance(frame.key, str) else "?"


# -- Python documents ------------------------------------------------------------------------------


def check_document(doc: Any, limits: Limits | None = None, *, prefix: str = "") -> list[Problem]:
    """Check a document of plain Python values (dicts, lists, scalars) against the limits.

    A crossed size limit (values, nesting, layers, a string's or a number's length) raises
    :class:`SpecError` at once, with the path where it was crossed: the walk stops there, so it costs
    at most ``max_nodes`` steps, whatever the document shares or repeats. Integers outside
    ``INT_MIN..INT_MAX`` are returned as problems (the caller lists them with the others).
    """
    limits = limits or Limits.from_env()
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if isinstance(layers, list) and len(layers) > limits.max_layers:
        raise SpecError(Problem(_join(prefix, ["layers"]), limits.exceeded("max_layers", f"{len(layers):,} layers")))
    max_bits = int(limits.max_number * 3.33) + 1
    problems: list[Problem] = []
    count = 0
    todo: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while todo:
        value, path = todo.pop()
        count += 1
        if count > limits.max_nodes:
            raise SpecError(
                Problem(
                    _join(prefix, path),
                    limits.exceeded("max_nodes", "too many values once shared parts are expanded"),
                )
            )
        if isinstance(value, dict):
            if len(path) + 1 > limits.max_nesting:
                raise SpecError(
                    Problem(
                        _join(prefix, path), limits.exceeded("max_nesting", f"nested {len(path) + 1:,} levels deep")
                    )
                )
            # keys are values too (pushed last so that they are looked at first)
            for key, item in reversed(list(value.items())):
                todo.append((item, (*path, key)))
            for key in value:
                if not isinstance(key, str) or len(key) > limits.max_string:
                    todo.append((key, path))
        elif isinstance(value, (list, tuple)):
            if len(path) + 1 > limits.max_nesting:
                raise SpecError(
                    Problem(
                        _join(prefix, path), limits.exceeded("max_nesting", f"nested {len(path) + 1:,} levels deep")
                    )
                )
            todo.extend((item, (*path, i)) for i, item in reversed(list(enumerate(value))))
        elif isinstance(value, (str, bytes)):
            if len(value) > limits.max_string:
                raise SpecError(
                    Problem(
                        _join(prefix, path), limits.exceeded("max_string", f"a string of {len(value):,} characters")
                    )
                )
        elif isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > max_bits:
                raise SpecError(
                    Problem(
                        _join(prefix, path),
                        limits.exceeded(
                            "max_number", f"a number of about {int(value.bit_length() * 0.30103) + 1:,} digits"
                        ),
                    )
                )
            if not INT_MIN <= value <= INT_MAX and len(problems) < _MAX_RANGE_PROBLEMS:
                problems.append(Problem(_join(prefix, path), out_of_range(value)))
    return problems


def recursion_room(depth: int) -> None:
    """Let Python recurse deep enough for Keras to walk a graph ``depth`` layers deep.

    Keras builds a functional model and loads a saved one by recursing over its graph, about one
    Python frame per layer, so a chain of :data:`~trainyard.defaults.SPEC_MAX_DEPTH` layers needs
    more than Python's default limit of 1,000 frames. The limit is raised for the whole process and
    never lowered (another thread may be inside Keras); frames of Python code cost no C stack.
    """
    frames = 0
    frame = sys._getframe()
    while frame is not None:
        frames += 1
        frame = frame.f_back  # type: ignore[assignment]
    needed = -(-(frames + 2 * depth + 500) // 1000) * 1000  # whole thousands: raised once, not at every call
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def human_bytes(count: int) -> str:
    """``160,000,000,000`` -> ``160.0 GB`` (powers of 1000, as disks and memory are sold)."""
    size = float(count)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def out_of_range(value: int) -> str:
    """The message for an integer outside what every job store holds."""
    bound = f"at most {INT_MAX:,}" if value > INT_MAX else f"at least {INT_MIN:,}"
    return f"expected an integer of {bound} (what every job store holds), received {shown(value)}"


def _join(prefix: str, parts: Any) -> str:
    """``("layers", 2, "units")`` after ``prefix`` -> ``prefix.layers[2].units``, each key shown short."""
    out = prefix
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
            continue
        text = part if isinstance(part, str) else shown(part)
        if len(text) > 40:
            text = text[:37] + "..."
        if not text.strip() or any(c in text for c in ".[]"):
            text = repr(text)
        out += f".{text}" if out else text
    return cut(out, 200)
