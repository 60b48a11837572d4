"""Hostile specs cost a clear error, not minutes and gigabytes: YAML alias bombs, huge numbers and
strings, deep nesting, thousands of layers, integers past what the stores hold.

Each hostile input goes through a real ``trainyard`` command (validate, submit, train, run) in a
child process under resource limits set by :func:`run_limited` (CPU seconds and address space, on
the child: a limit, not a timing assertion), and must end in exit 2 with one line naming its path
in the spec, and no traceback. The fuzzer builds YAML *graphs* (anchors and aliases, nesting,
long scalars, huge numbers) and feeds each to ``load_spec`` in a child under the same kind of limits.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainyard import defaults
from trainyard.db import JobState, Store, Submission
from trainyard.errors import SpecError
from trainyard.specs import load_spec, spec_from_document
from trainyard.specs.limits import INT_MAX, Limits, check_document, scan_yaml

REPO = Path(__file__).resolve().parents[2]
TRAINYARD = str(Path(sys.executable).with_name("trainyard"))

#: Budgets of a child running one trainyard command: CPU seconds (importing TensorFlow takes about
#: 6 of them) and address space (TensorFlow maps about 1.9 GB of it; the alias bomb of the report
#: grew past 3.9 GB before it died).
CPU_SECONDS = 90
MEMORY_BYTES = 3 * 1024**3

#: Budgets of the fuzzing child (no TensorFlow): per spec, and for the whole process.
FUZZ_CPU_SECONDS = 10
FUZZ_MEMORY_BYTES = 1536 * 1024**2

BASE = {
    "name": "hostile",
    "data": {"source": "builtin:diabetes"},
    "inputs": ["age", "sex", "bmi"],
    "layers": [{"type": "Dense", "units": 4, "activation": "relu"}],
    "outputs": {"y": {"target": "target"}},
    "training": {"epochs": 1},
}


def run_limited(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    cpu_seconds: int = CPU_SECONDS,
    memory_bytes: int = MEMORY_BYTES,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in a child whose CPU time and address space are limited by the kernel."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    return subprocess.run(
        list(args),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=20 * cpu_seconds,  # a guard against a child that sleeps instead of computing
    )


def bomb(levels: int = 9, fanout: int = 10) -> str:
    """A flow YAML node of ``fanout ** levels`` leaves in about ``levels * fanout * 5`` bytes: each level's
    first item defines an anchor, the others alias it."""
    node = '&a0 "lol"'
    for level in range(1, levels + 1):
        node = f"&a{level} [{node}" + f", *a{level - 1}" * (fanout - 1) + "]"
    return node


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def spec_text(**fields: str) -> str:
    """The base spec as YAML with some fields replaced by raw YAML text (``layer_<key>`` for layers[0])."""
    doc = json.loads(json.dumps(BASE))
    marks: dict[str, str] = {}
    for key, text in fields.items():
        mark = f"__MARK{len(marks)}__"
        marks[mark] = text
        if key.startswith("layer_"):
            doc["layers"][0][key.removeprefix("layer_")] = mark
        elif key == "layers":
            doc["layers"] = mark
        else:
            section, _, sub = key.partition("__")
            if sub:
                doc[section][sub] = mark
            else:
                doc[section] = mark
    text = yaml.safe_dump(doc, default_flow_style=None, width=10**9)
    for mark, raw in marks.items():
        text = text.replace(mark, raw)
    return text


def chain(n: int) -> str:
    """``n`` Dense layers, each naming its input explicitly, listed last first (the order costs no
    recursion either)."""
    layers = [
        f"- {{name: l{i}, type: Dense, units: 2, input: {'features' if i == 0 else f'l{i - 1}'}}}"
        for i in reversed(range(n))
    ]
    return spec_text(
        layers="\n" + "\n".join(f"  {line}" for line in layers), outputs__y=f"{{target: target, input: l{n - 1}}}"
    )


#: Hostile spec files: the file's name -> (its text, the problem line ``validate`` must print).
HOSTILE_FILES: dict[str, tuple[str, str]] = {
    "bomb_in_name.yaml": (
        spec_text(layer_name=bomb()),
        "layers[0].name[0][0][0][0][8]: too many values once aliases are expanded",
    ),
    "bomb_in_initializer.yaml": (
        spec_text(layer_kernel_initializer=bomb()),
        "layers[0].kernel_initializer[0][0][0][0][8]: too many values once aliases are expanded",
    ),
    "digits_units.yaml": (
        spec_text(layer_units="9" * 5000),
        "layers[0].units: a number of 5,000 characters (the limit is 100;",
    ),
    "long_name.yaml": (
        spec_text(name="n" * 100_000),
        "name: a string of 100,000 characters (the limit is 4,096;",
    ),
    "nested_argument.yaml": (
        spec_text(layer_kernel_size=nested(5000)),
        "layers[0].kernel_size[0][0]",
    ),
    "recursive_alias.yaml": (
        spec_text(layer_kernel_size="&loop [1, *loop]"),
        "layers[0].kernel_size[1]: the alias *loop refers to a node that contains it",
    ),
    "chain_3000.yaml": (
        spec_text(layers="\n" + "\n".join("  - {type: Dense, units: 2}" for _ in range(3000))),
        "layers: 3,000 layers (the limit is 1,000; TRAINYARD_SPEC_MAX_LAYERS raises it)",
    ),
    "model_40e9.yaml": (
        spec_text(layers="[{type: Dense, units: 200000}, {type: Dense, units: 200000}]"),
        "layers[1]: Dense has 40,000,200,000 parameters, bringing the model to 40,001,000,000 = 160.0 GB of float32"
        " weights (the limit is 100,000,000; TRAINYARD_SPEC_MAX_PARAMS raises it)",
    ),
    "layers_100000.yaml": (
        spec_text(layers="[&l {type: Dense, units: 1}" + ", *l" * 99_999 + "]"),
        "layers[19997]: too many values once aliases are expanded (the limit is 100,000;",
    ),
}


def _problem_lines(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines()]


def assert_refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 2, each expected problem on a line of its own, no traceback, every line short."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = _problem_lines(result.stderr)
    for text in expected:
        assert any(text in line for line in lines), (text, result.stderr[-3000:])
    assert max(len(line) for line in lines) <= 2 * defaults.PROBLEM_MAX_CHARS, max(lines, key=len)[:300]


# -- every hostile input through the real commands ----------------------------------------------


def test_validate_refuses_each_hostile_file_within_its_budget(tmp_path: Path) -> None:
    paths = []
    for name, (text, _) in HOSTILE_FILES.items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    result = run_limited([TRAINYARD, "validate", *paths, "/dev/zero"], cwd=tmp_path)
    assert_refused(result, *(line for _, line in HOSTILE_FILES.values()))
    stderr = result.stderr
    for name in HOSTILE_FILES:
        assert f"{tmp_path / name}: 1 problem" in stderr, (name, stderr[-3000:])
    assert "/dev/zero: 1 problem" in stderr
    assert "the file is larger than 1,048,576 bytes (the limit is 1,048,576; TRAINYARD_SPEC_MAX_BYTES" in stderr


def test_validate_refuses_hostile_set_values(tmp_path: Path) -> None:
    result = run_limited(
        [
            TRAINYARD,
            "validate",
            str(REPO / "specs" / "mlp.yaml"),
            "--set",
            f"training.epochs={nested(5000)}",
            "--set",
            f"layers[0].units={'7' * 5000}",
            "--set",
            "layers[1].name=" + bomb(),
        ],
        cwd=tmp_path,
    )
    assert_refused(
        result,
        "training.epochs[0][0][0]",
        "nested 33 levels deep (the limit is 32; TRAINYARD_SPEC_MAX_NESTING raises it)",
        "layers[0].units: a number of 5,000 characters",
        "layers[1].name[0][0][0][0][8]: too many values",
    )
    assert f"{REPO / 'specs' / 'mlp.yaml'}: 3 problems" in result.stderr


def test_a_set_path_5000_levels_deep_is_refused() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(REPO / "specs" / "mlp.yaml", overrides=["a" + ".a" * 5000 + "=1"])
    (problem,) = caught.value.problems
    assert problem.path.startswith("a.a.a.a.a.a.a.a")
    assert len(problem.path) <= 200
    assert problem.message == "nested 33 levels deep (the limit is 32; TRAINYARD_SPEC_MAX_NESTING raises it)"


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("training.epochs=99999999999999999999", "training.epochs"),
        ("training.epochs=2147483648", "training.epochs"),
        ("training.batch_size=99999999999999999999", "training.batch_size"),
    ],
)
def test_integers_past_the_stores_range_are_refused(override: str, path: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(REPO / "specs" / "mlp.yaml", overrides=[override])
    value = override.partition("=")[2]
    assert [str(p) for p in caught.value.problems] == [
        f"{path}: expected an integer of at most 2,147,483,647 (what every job store holds), received {value}"
    ]


def test_the_largest_integer_both_stores_hold_is_accepted() -> None:
    spec = load_spec(REPO / "specs" / "mlp.yaml", overrides=[f"training.epochs={INT_MAX}"])
    assert spec.training.epochs == INT_MAX


@pytest.mark.slow
def test_submit_stores_nothing_for_a_hostile_spec(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(HOSTILE_FILES["bomb_in_name.yaml"][0])
    env = {"TRAINYARD_HOME": str(tmp_path / "home")}
    result = run_limited(
        [
            TRAINYARD,
            "submit",
            "bomb.yaml",
            str(REPO / "specs" / "mlp.yaml"),
            "--set",
            "training.epochs=99999999999999999999",
        ],
        env=env,
        cwd=tmp_path,
    )
    assert_refused(
        result,
        "layers[0].name[0][0][0][0][8]: too many values once aliases are expanded",
        "training.epochs: expected an integer of at most 2,147,483,647",
    )
    store = Store.open(f"sqlite:///{tmp_path / 'home' / 'trainyard.sqlite'}")
    assert store.list_jobs() == []


@pytest.mark.slow
def test_train_refuses_a_hostile_spec_and_writes_no_model(tmp_path: Path) -> None:
    (tmp_path / "digits.yaml").write_text(HOSTILE_FILES["digits_units.yaml"][0])
    out = tmp_path / "model.keras"
    result = run_limited(
        [TRAINYARD, "train", "digits.yaml", "--out", str(out), "--set", "training.epochs=2147483648"], cwd=tmp_path
    )
    assert_refused(result, "layers[0].units: a number of 5,000 characters")
    assert not out.exists()
    result = run_limited(
        [
            TRAINYARD,
            "train",
            str(REPO / "specs" / "mlp.yaml"),
            "--out",
            str(out),
            "--set",
            "training.epochs=2147483648",
        ],
        cwd=tmp_path,
    )
    assert_refused(result, "training.epochs: expected an integer of at most 2,147,483,647")
    assert not out.exists()


@pytest.mark.slow
def test_run_refuses_a_hostile_spec_and_stops_its_worker(tmp_path: Path) -> None:
    (tmp_path / "nested.yaml").write_text(HOSTILE_FILES["nested_argument.yaml"][0])
    home = tmp_path / "home"
    result = run_limited([TRAINYARD, "run", "nested.yaml"], env={"TRAINYARD_HOME": str(home)}, cwd=tmp_path)
    assert_refused(result, "nested 33 levels deep (the limit is 32; TRAINYARD_SPEC_MAX_NESTING raises it)")
    assert Store.open(f"sqlite:///{home / 'trainyard.sqlite'}").list_jobs() == []


_SWEEP_SCRIPT = """
import sys
from pathlib import Path
from trainyard.errors import SpecError
from trainyard.sweeps import load_sweep

path = Path(sys.argv[1])
try:
    load_sweep(path, (path.parent,), "the test folder", build=False)
except SpecError as exc:
    print(exc)
"""


def test_a_sweep_file_is_read_within_the_same_limits(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(spec_text())
    (tmp_path / "sweep.yaml").write_text(
        "spec: spec.yaml\nmethod: random\ntrials: 2\nparameters:\n  layers[0].units: {choice: " + bomb() + "}\n"
    )
    result = run_limited([sys.executable, "-c", _SWEEP_SCRIPT, str(tmp_path / "sweep.yaml")], cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stdout.strip() == (
        f"{tmp_path / 'sweep.yaml'}: parameters.'layers[0].units'.choice[0][0][0][0][8]: too many values once aliases"
        " are expanded (the limit is 100,000; TRAINYARD_SPEC_MAX_NODES raises it)"
    )


# -- what stays allowed --------------------------------------------------------------------------


def test_aliases_for_shared_layer_settings_are_fine() -> None:
    text = """
name: shared
data: {source: builtin:diabetes}
inputs: [age, sex, bmi]
layers:
  - &hidden {type: Dense, units: 8, activation: relu, kernel_initializer: he_normal}
  - {<<: *hidden, units: 4}
  - *hidden
outputs:
  y: {target: target}
training: {epochs: 1}
"""
    spec = load_spec(text)
    assert [(layer.args["units"], layer.args["kernel_initializer"]) for layer in spec.layers] == [
        (8, "he_normal"),
        (4, "he_normal"),
        (8, "he_normal"),
    ]


def test_each_limit_is_raised_by_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    text = spec_text(layer_kernel_initializer=bomb(levels=5, fanout=10))  # 10^5 leaves, 111,111 values
    with pytest.raises(SpecError, match="too many values once aliases are expanded"):
        scan_yaml(text)
    monkeypatch.setenv("TRAINYARD_SPEC_MAX_NODES", "200000")
    scan_yaml(text)
    with pytest.raises(SpecError, match="a string of 5,000 characters"):
        scan_yaml("x" * 5000)
    monkeypatch.setenv("TRAINYARD_SPEC_MAX_STRING", "5000")
    scan_yaml("x" * 5000)
    monkeypatch.setenv("TRAINYARD_SPEC_MAX_LAYERS", "many")
    with pytest.raises(SpecError, match="TRAINYARD_SPEC_MAX_LAYERS: expected a positive integer, received 'many'"):
        Limits.from_env()
    assert Limits.from_env({"TRAINYARD_SPEC_MAX_DEPTH": "2000"}).max_depth == 2000
    assert Limits.from_env({}) == Limits()


def test_python_documents_are_walked_within_the_limits() -> None:
    shared: Any = ["lol"] * 10
    for _ in range(8):
        shared = [shared] * 10  # 10^9 leaves in a few kilobytes
    doc = json.loads(json.dumps(BASE))
    doc["layers"][0]["kernel_initializer"] = shared
    with pytest.raises(SpecError) as caught:
        load_spec(doc)
    assert str(caught.value.problems[0]).startswith("layers[0].kernel_initializer[0][0][0][0]")
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    doc["layers"][0]["kernel_initializer"] = deep
    with pytest.raises(SpecError, match=r"nested 33 levels deep"):
        load_spec(doc)
    doc["layers"][0]["kernel_initializer"] = None
    doc["layers"][0]["units"] = 10**6000
    with pytest.raises(SpecError, match=r"layers\[0\].units: a number of about 6,001 digits"):
        load_spec(doc)
    assert check_document({"a": [1, -(2**31) - 1]})[0].message.startswith(
        "expected an integer of at least -2,147,483,648"
    )


def test_messages_show_a_short_prefix_of_a_long_value() -> None:
    doc = json.loads(json.dumps(BASE))
    doc["layers"][0]["units"] = "u" * 4000
    with pytest.raises(SpecError) as caught:
        load_spec(doc)
    (problem,) = caught.value.problems
    assert problem.path == "layers[0].units"
    assert problem.message.startswith("expected a positive integer, received 'uuuu")
    assert problem.message.endswith("... (4,000 characters)")
    assert len(problem.message) < 150


# -- the stored document, read back by a worker ---------------------------------------------------


def test_a_forged_stored_document_fails_its_job_with_the_path(tmp_path: Path) -> None:
    from trainyard.config import Settings
    from trainyard.worker import runner

    settings = Settings.from_env({"TRAINYARD_HOME": str(tmp_path)})
    store = Store.open(settings.db_url)
    forged = json.loads(json.dumps(BASE))
    forged["training"]["batch_size"] = 99999999999999999999  # once "Python int too large to convert to C long"
    (job,) = store.add_jobs([Submission(spec=forged)])
    with pytest.raises(SpecError, match=r"training.batch_size: expected an integer of at most 2,147,483,647"):
        spec_from_document(store.get_job(job.id).spec_document or {})
    claimed = store.claim_next("test/1", 60)
    assert claimed is not None
    assert runner.run_job(store, claimed, "test/1", settings) is JobState.FAILED
    assert "training.batch_size: expected an integer of at most 2,147,483,647" in (store.get_job(job.id).error or "")


# -- a fuzzer of YAML graphs ----------------------------------------------------------------------

#: Where a generated YAML node goes in the base spec.
FIELDS = [
    "name",
    "inputs",
    "layer_name",
    "layer_units",
    "layer_kernel_initializer",
    "layer_activation",
    "training__epochs",
    "training__batch_size",
    "data__source",
    "outputs",
    "extra",
]

_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),  # numbers of up to 6,000 digits
    st.integers(min_value=1, max_value=6000).map(lambda n: "1" * n + ".5"),
    st.text(max_size=20).map(json.dumps),
    st.integers(min_value=0, max_value=20_000).map(lambda n: json.dumps("s" * n)),  # long strings
    st.sampled_from(["relu", "Dense", "null", "true", "1e400", "-.inf", ".nan", "0x1F", "~", "''"]),
)


@st.composite
def yaml_graphs(draw: st.DrawFn) -> str:
    """One YAML node in flow style: scalars, lists and mappings nested to any depth, anchors on some
    nodes and aliases to earlier ones (alias bombs, recursive aliases), or plain deep nesting."""
    anchors: list[str] = []
    open_anchors: list[str] = []

    def node(depth: int) -> str:
        kind = draw(st.sampled_from(["scalar", "scalar", "list", "map", "alias", "bomb", "deep"]))
        if depth > 4 or kind == "scalar":
            return draw(_scalars)
        if kind == "alias" and (anchors or open_anchors):
            return "*" + draw(st.sampled_from(anchors + open_anchors))
        if kind == "bomb":
            levels = draw(st.integers(min_value=1, max_value=10))
            fanout = draw(st.integers(min_value=1, max_value=12))
            return bomb(levels, fanout).replace("&a", f"&b{len(anchors)}_").replace("*a", f"*b{len(anchors)}_")
        if kind == "deep":
            return nested(draw(st.integers(min_value=1, max_value=6000)))
        anchor = f"n{len(anchors) + len(open_anchors)}" if draw(st.booleans()) else None
        if anchor:
            open_anchors.append(anchor)
        size = draw(st.integers(min_value=0, max_value=12))
        if kind == "list":
            body = "[" + ", ".join(node(depth + 1) for _ in range(size)) + "]"
        else:
            items = [f"{json.dumps(draw(st.text(max_size=8)) or 'k')}: {node(depth + 1)}" for _ in range(size)]
            body = "{" + ", ".join(dict.fromkeys(items)) + "}"
        if anchor:
            open_anchors.remove(anchor)
            anchors.append(anchor)
            body = f"&{anchor} {body}"
        return body

    return node(0)


@pytest.fixture(scope="module")
def spec_child() -> Iterator[Any]:
    """A child process reading specs (see spec_child.py) under an address-space limit; restarted if
    a spec killed it."""

    class Child:
        def __init__(self) -> None:
            self.process: subprocess.Popen[str] | None = None

        def start(self) -> None:
            def limit() -> None:
                resource.setrlimit(resource.RLIMIT_AS, (FUZZ_MEMORY_BYTES, FUZZ_MEMORY_BYTES))

            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("spec_child.py"))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                preexec_fn=limit,
            )

        def load(self, text: str) -> dict[str, Any]:
            if self.process is None or self.process.poll() is not None:
                self.start()
            assert self.process is not None and self.process.stdin and self.process.stdout
            self.process.stdin.write(json.dumps({"yaml": text, "cpu_seconds": FUZZ_CPU_SECONDS}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
            if not line:
                code = self.process.wait(30)
                self.process = None
                return {"outcome": "killed", "returncode": code}
            return json.loads(line)

        def stop(self) -> None:
            if self.process is not None and self.process.poll() is None:
                assert self.process.stdin
                self.process.stdin.close()
                self.process.wait(30)

    child = Child()
    try:
        yield child
    finally:
        child.stop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(field=st.sampled_from(FIELDS), graph=yaml_graphs())
def test_fuzzed_yaml_graphs_end_in_a_spec_error_with_paths(spec_child: Any, field: str, graph: str) -> None:
    text = spec_text(**{field: graph})
    answer = spec_child.load(text)
    assert answer["outcome"] in ("ok", "spec_error"), answer
    for path, message in answer.get("problems", []):
        assert path, message
        assert len(message) <= defaults.PROBLEM_MAX_CHARS and len(path) <= defaults.PROBLEM_MAX_CHARS, (path, message)


# -- model size and depth -------------------------------------------------------------------------

_WORKER_SCRIPT = """
import json, sys
from trainyard.config import Settings
from trainyard.db import Store, Submission
from trainyard.worker import runner

settings = Settings.from_env()
store = Store.open(settings.db_url)
(job,) = store.add_jobs([Submission(spec=json.loads(sys.argv[1]))])
claimed = store.claim_next("test/1", 60)
state = runner.run_job(store, claimed, "test/1", settings)
print(json.dumps({"state": str(state), "error": store.get_job(job.id).error}))
"""


def test_the_worker_refuses_a_model_larger_than_the_hosts_memory_before_building_it(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(BASE))
    doc["layers"] = [{"type": "Dense", "units": 200_000}, {"type": "Dense", "units": 200_000}]
    result = run_limited(
        [sys.executable, "-c", _WORKER_SCRIPT, json.dumps(doc)],
        env={"TRAINYARD_HOME": str(tmp_path), "TRAINYARD_SPEC_MAX_PARAMS": str(10**12)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["state"] == "failed"
    assert answer["error"].startswith(
        "the model has 40,001,200,001 parameters: training it needs about 640.0 GB of memory (weights, gradients"
        " and optimizer state as float32), more than the "
    )
    assert answer["error"].endswith(" this host has available")


def test_counting_parameters_allocates_no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tripwire of builder._without_weights: Keras still keeps the weights a stateless scope defers
    in the private list the builder empties, and nothing is left there after a validation."""
    import keras
    from keras.src.backend.common import global_state

    from trainyard.specs import validate_spec

    with keras.StatelessScope(initialize_variables=False):
        keras.layers.Dense(3).build((None, 2))
        deferred = global_state.get_global_attribute("uninitialized_variables")
    assert isinstance(deferred, list) and len(deferred) == 2  # kernel and bias
    global_state.set_global_attribute("uninitialized_variables", [])

    doc = json.loads(json.dumps(BASE))
    monkeypatch.setenv("TRAINYARD_SPEC_MAX_PARAMS", str(10**9))
    doc["layers"] = [{"type": "Dense", "units": 20_000}, {"type": "Dense", "units": 20_000}]  # 1.6 GB of weights
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = validate_spec(load_spec(doc))
    assert summary.total_params == 3 * 20_000 + 20_000 + 20_000 * 20_000 + 20_000 + 20_000 + 1
    assert global_state.get_global_attribute("uninitialized_variables") == []
    with keras.StatelessScope():  # a scope that initialises what is deferred: nothing is
        pass
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 400 * 1024, f"validation grew the process by {grown_kb // 1024} MB"


def _chain_doc(n: int) -> dict[str, Any]:
    """A spec whose ``n`` layers form one chain, listed last first, each naming its input."""
    doc = json.loads(json.dumps(BASE))
    doc["layers"] = [
        {"name": f"l{i}", "type": "Activation", "activation": "linear", "input": "features" if i == 0 else f"l{i - 1}"}
        for i in reversed(range(n))
    ]
    doc["outputs"] = {"y": {"target": "target", "input": f"l{n - 1}"}}
    return doc


def test_a_graph_deeper_than_the_limit_is_refused_before_keras_sees_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINYARD_SPEC_MAX_LAYERS", "5000")
    with pytest.raises(SpecError) as caught:
        load_spec(_chain_doc(defaults.SPEC_MAX_DEPTH + 1))
    assert [str(p) for p in caught.value.problems] == [
        "layers[0]: 1,001 layers deep from an input (the limit is 1,000; TRAINYARD_SPEC_MAX_DEPTH raises it)"
    ]


@pytest.mark.slow
def test_the_deepest_graph_allowed_builds_trains_and_loads(tmp_path: Path) -> None:
    """The depth limit is one Keras handles: a chain that deep builds, trains, saves and loads in safe mode."""
    from trainyard.scheduler.prediction import open_predictor
    from trainyard.specs import validate_spec
    from trainyard.training import BaseSink, train

    sys.setrecursionlimit(1_000)  # Python's default: another package imported here may have raised it
    spec = load_spec(_chain_doc(defaults.SPEC_MAX_DEPTH))
    assert len(validate_spec(spec).layers) == defaults.SPEC_MAX_DEPTH + 2  # the input and the head
    result = train(spec, BaseSink(), model_path=tmp_path / "deep.keras")
    sys.setrecursionlimit(1_000)
    predictor = open_predictor(result.model_path)  # what `trainyard predict` loads, in safe mode
    assert len(predictor.model.layers) == defaults.SPEC_MAX_DEPTH + 2
