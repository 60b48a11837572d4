"""The layer graph of a spec: default ``input`` references, names, dangling references, cycles.

All of this is found before Keras sees the spec, so every problem carries its path in the spec.
"""

from __future__ import annotations

from typing import Any

from trainyard.errors import Problem
from trainyard.specs.features import layer_names
from trainyard.specs.limits import Limits, shown
from trainyard.specs.schema import JobSpec, LayerSpec, did_you_mean

#: Argument keys whose value Keras deserialises into arbitrary objects when given as a mapping.
_OBJECT_KEYS = frozenset({"class_name", "module", "registered_name"})

#: Arguments that make a layer read a file when given as a string.
_FILE_ARGS = frozenset({"vocabulary", "idf_weights", "filepath", "path"})


def resolve_graph(spec: JobSpec) -> tuple[JobSpec, list[Problem]]:
    """Fill default ``input`` references and check names and references; returns the explicit spec and problems."""
    problems: list[Problem] = []
    owners: dict[str, str] = {}

    def claim(name: str, path: str) -> None:
        if name in owners:
            problems.append(Problem(path, f"name {name!r} is already used by {owners[name]}"))
        else:
            owners[name] = path

    for name, inp in spec.inputs.items():
        claim(name, f"inputs.{name}")
        for layer_name in layer_names(name, inp)[0]:
            claim(layer_name, f"inputs.{name}")
    for i, layer in enumerate(spec.layers):
        claim(layer.name, f"layers[{i}].name")
    for name in spec.outputs:
        claim(name, f"outputs.{name}")

    input_names = list(spec.inputs)
    layer_index = {layer.name: i for i, layer in enumerate(spec.layers)}
    sources = set(input_names) | set(layer_index)

    layers: list[LayerSpec] = []
    for i, layer in enumerate(spec.layers):
        refs = layer.input
        if refs is None:
            if i > 0:
                refs = [spec.layers[i - 1].name]
            elif len(input_names) == 1:
                refs = [input_names[0]]
            else:
                problems.append(
                    Problem(
                        f"layers[{i}].input",
                        f"required for the first layer when there are several inputs ({', '.join(input_names)})",
                    )
                )
                refs = []
        for j, ref in enumerate(refs):
            if ref not in sources:
                where = f"layers[{i}].input" + (f"[{j}]" if layer.input_is_list else "")
                problems.append(Problem(where, f"unknown layer or input {ref!r} (known: {', '.join(sorted(sources))})"))
            elif (
                ref == layer.name and layer.input is not None
            ):  # a default input equal to the own name means a duplicate name
                problems.append(Problem(f"layers[{i}].input", f"layer {ref!r} takes itself as input"))
        if not refs and layer.input is not None:
            problems.append(Problem(f"layers[{i}].input", "expected at least one layer or input name, received []"))
        problems += check_args(i, layer.args)
        layers.append(layer.model_copy(update={"input": refs}))

    outputs = {}
    for name, out in spec.outputs.items():
        ref = out.input
        if ref is None:
            ref = layers[-1].name if layers else input_names[0] if len(input_names) == 1 else None
            if ref is None:
                problems.append(
                    Problem(f"outputs.{name}.input", "required when the spec has several inputs and no layers")
                )
        elif ref not in sources:
            problems.append(
                Problem(
                    f"outputs.{name}.input", f"unknown layer or input {ref!r} (known: {', '.join(sorted(sources))})"
                )
            )
        outputs[name] = out.model_copy(update={"input": ref})

    training, stopping_problems = _early_stopping(spec)
    problems += stopping_problems
    resolved = spec.model_copy(update={"layers": layers, "outputs": outputs, "training": training})
    cycle = _find_cycle(resolved)
    if cycle:
        first = layer_index[cycle[0]]
        problems.append(
            Problem(f"layers[{first}].input", f"cycle in the layer graph: {' -> '.join(cycle + [cycle[0]])}")
        )
    else:
        problems += _depth_problems(resolved)
    if not cycle and not problems:
        used = _reachable(resolved)
        for i, layer in enumerate(layers):
            if layer.name not in used:
                problems.append(Problem(f"layers[{i}]", f"layer {layer.name!r} does not lead to any output"))
        for name in input_names:
            if name not in used:
                problems.append(Problem(f"inputs.{name}", f"input {name!r} is not used by any layer or output"))
    return resolved, problems


def _depth_problems(spec: JobSpec) -> list[Problem]:
    """The first layer deeper than the limit (layers on its longest path from an input), if any."""
    limits = Limits.from_env()
    index = {layer.name: i for i, layer in enumerate(spec.layers)}
    depth: dict[str, int] = {}
    for layer in build_order(spec):
        depth[layer.name] = 1 + max((depth.get(ref, 0) for ref in layer.input or ()), default=0)
        if depth[layer.name] > limits.max_depth:
            what = f"{depth[layer.name]:,} layers deep from an input"
            return [Problem(f"layers[{index[layer.name]}]", limits.exceeded("max_depth", what))]
    return []


def build_order(spec: JobSpec) -> list[LayerSpec]:
    """The layers in an order where every layer comes after its inputs (the spec must be resolved).

    A depth-first walk with its own stack, not Python's: a chain of any length costs no recursion.
    """
    index = {layer.name: layer for layer in spec.layers}
    done: set[str] = set(spec.inputs)
    order: list[LayerSpec] = []
    for root in spec.layers:
        if root.name in done:
            continue
        done.add(root.name)
        stack = [(root, iter(root.input or ()))]
        while stack:
            layer, refs = stack[-1]
            for ref in refs:
                if ref not in done and ref in index:
                    done.add(ref)
                    stack.append((index[ref], iter(index[ref].input or ())))
                    break
            else:
                stack.pop()
                order.append(layer)
    return order


def _early_stopping(spec: JobSpec) -> tuple[Any, list[Problem]]:
    """``training`` with early stopping's output named (the only output when none is given)."""
    stopping = spec.training.early_stopping
    if stopping is None:
        return spec.training, []
    names = list(spec.outputs)
    path = "training.early_stopping.output"
    if stopping.output is None:
        if len(names) == 1:
            return spec.training.model_copy(
                update={"early_stopping": stopping.model_copy(update={"output": names[0]})}
            ), []
        return spec.training, [Problem(path, f"required when there are several outputs ({', '.join(names)})")]
    if stopping.output not in spec.outputs:
        hint = did_you_mean(stopping.output, names) or f" (outputs: {', '.join(names)})"
        return spec.training, [Problem(path, f"unknown output {stopping.output!r}{hint}")]
    return spec.training, []


def _find_cycle(spec: JobSpec) -> list[str] | None:
    """The first cycle of layer references found (its layers in order), or None; no recursion."""
    deps = {layer.name: [r for r in layer.input or () if r != layer.name] for layer in spec.layers}
    state: dict[str, int] = {}  # 1 = on the path being walked, 2 = done
    for root in deps:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        stack = [iter(deps[root])]
        while stack:
            for ref in stack[-1]:
                if ref not in deps:
                    continue
                if state.get(ref) == 1:
                    return path[path.index(ref) :]
                if ref not in state:
                    state[ref] = 1
                    path.append(ref)
                    stack.append(iter(deps[ref]))
                    break
            else:
                stack.pop()
                state[path.pop()] = 2
    return None


def _reachable(spec: JobSpec) -> set[str]:
    deps = {layer.name: list(layer.input or ()) for layer in spec.layers}
    seen: set[str] = set()
    todo = [out.input for out in spec.outputs.values() if out.input]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(deps.get(name, ()))
    return seen


def check_args(i: int, args: dict[str, Any]) -> list[Problem]:
    """Static argument checks: positive sizes, sane rates, and nothing Keras would deserialise or read from disk."""
    problems: list[Problem] = []
    for key, value in args.items():
        path = f"layers[{i}].{key}"
        if key in ("units", "filters", "num_heads", "key_dim", "output_dim", "input_dim", "num_bins"):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(Problem(path, f"expected a positive integer, received {shown(value)}"))
        elif key == "rate":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
                problems.append(Problem(path, f"expected a number in [0, 1), received {shown(value)}"))
        elif key in _FILE_ARGS and isinstance(value, str):
            problems.append(
                Problem(
                    path,
                    f"file paths are not accepted here (received {shown(value)}); give the values inline as a list",
                )
            )
        bad = _object_reference(value)
        if bad is not None:
            problems.append(
                Problem(
                    path + bad,
                    "serialised Keras objects (mappings with class_name/module/registered_name) are refused; give a name such as 'relu' or 'glorot_uniform'",
                )
            )
    return problems


def _object_reference(value: Any, where: str = "") -> str | None:
    """The sub-path of the first mapping that Keras would deserialise as an object, or None."""
    if isinstance(value, dict):
        if _OBJECT_KEYS & set(value):
            return where
        for k, v in value.items():
            found = _object_reference(v, f"{where}.{k}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for j, v in enumerate(value):
            found = _object_reference(v, f"{where}[{j}]")
            if found is not None:
                return found
    return None
