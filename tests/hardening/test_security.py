"""Hostile specs and hostile workers' inputs: no code from a spec, no file outside the data roots,
no password on a screen or in a log. (Pickle refused by a worker: see test_faults.py, Redis outage.)"""

from __future__ import annotations

import ast
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import trainyard
from trainyard.cli import main
from trainyard.config import Settings
from trainyard.db import JobState, Store, Submission
from trainyard.errors import BrokerError, SpecError
from trainyard.scheduler import operations
from trainyard.worker import runner

PACKAGE = Path(trainyard.__file__).resolve().parent

SPEC = {
    "name": "hostile",
    "data": {"source": "builtin:diabetes"},
    "inputs": ["age", "sex", "bmi"],
    "layers": [{"type": "Dense", "units": 4}],
    "outputs": {"y": {"target": "target", "loss": "mean_squared_error"}},
    "training": {"epochs": 1, "optimizer": "adam"},
}

_REFUSED_OBJECT = (
    "serialised Keras objects (mappings with class_name/module/registered_name) are refused;"
    " give a name such as 'relu' or 'glorot_uniform'"
)
_MODULE_PATH = "expected the name of a keras.layers class such as 'Dense' (module paths are refused), received"

#: A hostile layer, and the one problem (path: message) that refuses it.
HOSTILE_LAYERS: dict[str, tuple[dict[str, Any], str]] = {
    "Lambda": (
        {"type": "Lambda", "function": "lambda x: __import__('os').system('id')"},
        "layers[0].type: layer type 'Lambda' is refused: it runs arbitrary Python code",
    ),
    "custom object": (
        {"type": "Dense", "units": 4, "kernel_initializer": {"class_name": "Evil", "module": "evil", "config": {}}},
        f"layers[0].kernel_initializer: {_REFUSED_OBJECT}",
    ),
    "registered name": (
        {"type": "Dense", "units": 4, "activation": {"registered_name": "evil>Act"}},
        f"layers[0].activation: {_REFUSED_OBJECT}",
    ),
    "module path as type": ({"type": "os.system"}, f"layers[0].type: {_MODULE_PATH} 'os.system'"),
    "keras path as type": (
        {"type": "keras.layers.Dense", "units": 4},
        f"layers[0].type: {_MODULE_PATH} 'keras.layers.Dense'",
    ),
    "TFSMLayer (loads a saved model)": (
        {"type": "TFSMLayer"},
        "layers[0].type: layer type 'TFSMLayer' is refused: it loads a saved model from a file",
    ),
    "not a keras.layers class": ({"type": "Sequential"}, "layers[0].type: unknown layer type 'Sequential'"),
    "dunder": ({"type": "__class__"}, "layers[0].type: unknown layer type '__class__'"),
    "Wrapper": (
        {"type": "TimeDistributed", "layer": "Dense"},
        "layers[0].type: layer type 'TimeDistributed' is refused: it wraps other layer objects or runs user code",
    ),
    "module path as activation": (
        {"type": "Dense", "units": 4, "activation": "os.system"},
        "layers[0]: Dense: Could not interpret activation function identifier: os.system",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_LAYERS))
def test_a_spec_asking_for_code_is_refused_and_nothing_is_stored(case: str, home: Path, tmp_path: Path) -> None:
    layer, problem = HOSTILE_LAYERS[case]
    spec_file = tmp_path / "hostile.yaml"
    spec_file.write_text(json.dumps({**SPEC, "layers": [layer]}))  # JSON is YAML
    submitted = CliRunner().invoke(main, ["submit", str(spec_file)])
    assert (submitted.exit_code, submitted.stdout) == (2, ""), submitted.output
    assert submitted.stderr == f"error: {spec_file}: {problem}\n"
    assert Store.open(Settings.from_env().db_url).list_jobs() == []


# ---------------------------------------------------------------- safe mode

#: Keras' functions that rebuild a model from a file or a config; each takes ``safe_mode``.
_LOADERS = frozenset({"load_model", "deserialize_keras_object"})
_KERAS = frozenset({"keras", "tensorflow", "tf_keras"})


def unsafe_model_loads(source: str, filename: str) -> list[str]:
    """``file:line: ...`` for each call of Keras' ``load_model`` (``keras.saving``, ``keras.models``,
    ``tf.keras``...) or ``deserialize_keras_object`` without ``safe_mode=True`` (the literal), whatever
    name it is imported or assigned under; for each other use of one (passed around, its safe mode
    cannot be checked), and for each use of ``enable_unsafe_deserialization``."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}  # a local name -> the qualified name it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for name in node.names:
                aliases[name.asname or name.name.split(".")[0]] = name.name if name.asname else name.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            aliases.update({name.asname or name.name: f"{node.module}.{name.name}" for name in node.names})

    def qualified(expr: ast.expr) -> str | None:
        parts: list[str] = []
        while isinstance(expr, ast.Attribute):
            parts.insert(0, expr.attr)
            expr = expr.value
        root = aliases.get(expr.id) if isinstance(expr, ast.Name) else None
        return ".".join([root, *parts]) if root else None

    def keras_name(expr: ast.expr, names: frozenset[str]) -> str | None:
        name = qualified(expr)
        return name if name and name.split(".")[0] in _KERAS and name.split(".")[-1] in names else None

    assigned: set[int] = set()  # `load = keras.saving.load_model`: `load` is checked where it is called
    for _ in range(3):  # chains of such assignments
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and keras_name(node.value, _LOADERS):
                assigned.add(id(node.value))
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        aliases[target.id] = qualified(node.value)  # type: ignore[assignment]
    offenders: list[tuple[int, str]] = []
    called: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (name := keras_name(node.func, _LOADERS)):
            called.add(id(node.func))
            given = [k.value for k in node.keywords if k.arg == "safe_mode"]
            if not given:
                offenders.append((node.lineno, f"{name}(...) without safe_mode=True"))
            elif not (isinstance(given[0], ast.Constant) and given[0].value is True):
                offenders.append((node.lineno, f"{name}(..., safe_mode={ast.unparse(given[0])})"))
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Name, ast.Attribute)) or id(node) in called or id(node) in assigned:
            continue
        if name := keras_name(node, frozenset({"enable_unsafe_deserialization"})):
            offenders.append((node.lineno, f"{name} turns safe mode off for the whole process"))
        elif (name := keras_name(node, _LOADERS)) and not isinstance(getattr(node, "ctx", None), ast.Store):
            offenders.append((node.lineno, f"{name} used without a call whose safe_mode can be checked"))
    return [f"{filename}:{line}: {what}" for line, what in sorted(offenders)]


_UNSAFE_SOURCE = """
import keras
import keras as k
import tensorflow as tf
from keras import saving as s
from keras.models import load_model
from keras.saving import load_model as lm
from keras.saving import deserialize_keras_object

flag = True
keras.saving.load_model("a.keras")
k.models.load_model("a.keras", safe_mode=False)
s.load_model("a.keras", safe_mode=flag)
lm("a.keras", safe_mode=1)
load_model("a.keras", None, True, True)
tf.keras.models.load_model("a.keras", **{"safe_mode": True})
again = lm
again("a.keras")
paths = list(map(keras.saving.load_model, ["a.keras"]))
deserialize_keras_object({}, safe_mode=None)
keras.config.enable_unsafe_deserialization()


def inside():
    import keras.saving as ks

    return ks.load_model("a.keras")
"""

_SAFE_SOURCE = """
import keras
import tensorflow as tf
from keras.saving import load_model as lm

from trainyard.somewhere import load_model


def helper(store):
    keras.saving.load_model("a.keras", safe_mode=True)
    keras.models.load_model("a.keras", compile=False, safe_mode=True)
    tf.keras.models.load_model("a.keras", safe_mode=True)
    lm("a.keras", safe_mode=True)
    keras.saving.deserialize_keras_object({}, safe_mode=True)
    load_model("not keras")  # trainyard's own function of the same name
    store.load_model(1)  # a method of something else
"""


def test_the_safe_mode_lint_finds_every_unsafe_load_whatever_its_name() -> None:
    assert unsafe_model_loads(_UNSAFE_SOURCE, "bad.py") == [
        "bad.py:11: keras.saving.load_model(...) without safe_mode=True",
        "bad.py:12: keras.models.load_model(..., safe_mode=False)",
        "bad.py:13: keras.saving.load_model(..., safe_mode=flag)",
        "bad.py:14: keras.saving.load_model(..., safe_mode=1)",
        "bad.py:15: keras.models.load_model(...) without safe_mode=True",
        "bad.py:16: tensorflow.keras.models.load_model(...) without safe_mode=True",
        "bad.py:18: keras.saving.load_model(...) without safe_mode=True",
        "bad.py:19: keras.saving.load_model used without a call whose safe_mode can be checked",
        "bad.py:20: keras.saving.deserialize_keras_object(..., safe_mode=None)",
        "bad.py:21: keras.config.enable_unsafe_deserialization turns safe mode off for the whole process",
        "bad.py:27: keras.saving.load_model(...) without safe_mode=True",
    ]
    assert unsafe_model_loads(_SAFE_SOURCE, "good.py") == []


def test_every_model_load_in_trainyard_uses_safe_mode() -> None:
    """Every Keras model load in the package passes ``safe_mode=True``: unsafe loading of a
    ``Lambda`` layer runs its code (the lint itself is tested above, on sources that break the rule)."""
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20  # the whole package was read
    offenders = [
        offender
        for source in sources
        for offender in unsafe_model_loads(source.read_text(), str(source.relative_to(PACKAGE.parent)))
    ]
    assert offenders == []


def test_the_lint_reads_the_load_of_trainyard_predict() -> None:
    """``trainyard predict`` loads files users hand it: the lint above covers that load, and would
    report it if its safe mode were turned off."""
    path = PACKAGE / "scheduler" / "prediction.py"
    source = path.read_text()
    assert source.count("load_model(") == 1 and unsafe_model_loads(source, "prediction.py") == []
    flipped = source.replace("safe_mode=True", "safe_mode=False")
    assert [o.split(": ", 1)[1] for o in unsafe_model_loads(flipped, "prediction.py")] == [
        "keras.saving.load_model(..., safe_mode=False)"
    ]


@pytest.mark.slow
def test_the_models_trainyard_saves_load_in_safe_mode(home: Path, tmp_path: Path) -> None:
    import keras

    from trainyard.specs import load_spec
    from trainyard.training import train

    result = train(load_spec(SPEC), model_path=tmp_path / "m.keras")
    model = keras.saving.load_model(result.model_path, safe_mode=True)
    assert [layer.__class__.__module__.split(".")[0] for layer in model.layers] == ["keras"] * len(model.layers)


# ---------------------------------------------------------------- data roots


def _csv_spec(source: str) -> dict[str, Any]:
    return {
        **SPEC,
        "data": {"source": source, "split": {"valid": 0.25, "test": 0.25}},
        "inputs": ["a"],
        "outputs": {"y": {"target": "y", "loss": "mean_squared_error"}},
    }


@pytest.fixture
def layout(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """``work`` (the submitter's working directory) and a readable CSV ``outside`` it."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    rows = "a,y\n" + "".join(f"{i},{2 * i}\n" for i in range(20))
    (work / "mine.csv").write_text(rows)
    (elsewhere / "secret.csv").write_text(rows)
    (work / "link.csv").symlink_to(elsewhere / "secret.csv")
    monkeypatch.chdir(work)
    return {"work": work, "outside": elsewhere / "secret.csv"}


@pytest.mark.parametrize("source", ["../elsewhere/secret.csv", "{outside}", "link.csv"])
def test_submit_refuses_data_outside_the_working_directory(source: str, layout: dict[str, Path]) -> None:
    with pytest.raises(SpecError) as refused:
        operations.submit([_csv_spec(source.format(outside=layout["outside"]))], dispatch=False)
    assert "outside the data roots" in str(refused.value) and refused.value.problems[0].path == "data.source"
    assert Store.open(Settings.from_env().db_url).list_jobs() == []
    # Inside the working directory (the default root) the same data is accepted.
    (job,) = operations.submit([_csv_spec("mine.csv")], dispatch=False)
    submission = Store.open(Settings.from_env().db_url).get_job(job.id).submission
    assert submission is not None and submission.data_roots == (str(layout["work"].resolve()),)


def test_trainyard_data_roots_of_the_submitter_widen_or_narrow_the_default(
    layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINYARD_DATA_ROOTS", str(layout["outside"].parent))
    (job,) = operations.submit([_csv_spec(str(layout["outside"]))], dispatch=False)
    assert job.state is JobState.QUEUED
    with pytest.raises(SpecError, match="outside TRAINYARD_DATA_ROOTS"):
        operations.submit([_csv_spec("mine.csv")], dispatch=False)


def _forged_job(store: Store, source: str, roots: list[str]) -> int:
    """A job document written straight into the store, as a hostile client could (no submit checks)."""
    from trainyard.specs import load_spec

    document = load_spec(_csv_spec(source), check_data=False).document()
    (job,) = store.add_jobs([Submission(spec=document, data_roots=tuple(roots))])
    return job.id


def _run(store: Store, settings: Settings) -> Any:
    job = store.claim_next("hostile@test/1", settings.lease_seconds)
    assert job is not None
    runner.run_job(store, job, "hostile@test/1", settings)
    return store.get_job(job.id)


def test_a_worker_never_reads_etc_shadow(layout: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    store = Store.open(settings.db_url)
    # The roots recorded at submit (the submitter's working directory) hold on the worker.
    _forged_job(store, "/etc/shadow", [str(layout["work"])])
    job = _run(store, settings)
    assert job.state is JobState.FAILED and "/etc/shadow is outside the data roots recorded at submit" in job.error
    assert store.epochs(job.id) == []
    # A worker with TRAINYARD_DATA_ROOTS enforces its own roots, whatever the job document claims.
    monkeypatch.setenv("TRAINYARD_DATA_ROOTS", str(layout["work"]))
    settings = Settings.from_env()
    _forged_job(store, "/etc/shadow", ["/"])
    job = _run(store, settings)
    assert job.state is JobState.FAILED and "/etc/shadow is outside TRAINYARD_DATA_ROOTS" in job.error


# ---------------------------------------------------------------- passwords


def test_a_broker_password_never_reaches_the_screen(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: the broker is unreachable
    password = "p4ss-w0rd-never-shown"
    monkeypatch.setenv("TRAINYARD_BROKER_URL", f"redis://:{password}@127.0.0.1:{port}/0")
    redacted = f"redis://:***@127.0.0.1:{port}/0"
    cli = CliRunner()
    submitted = cli.invoke(main, ["submit", str(Path(__file__).parents[2] / "specs" / "mlp.yaml")])
    # stored, then not sent: one line naming the broker (redacted), exit 2; the job waits for a reconciler
    assert submitted.exit_code == 2 and submitted.stdout == "", submitted.output
    assert submitted.stderr.startswith("error: job(s) 1 are queued in the store but could not be dispatched")
    assert f"(broker {redacted} is unreachable" in submitted.stderr and submitted.stderr.count("\n") == 1
    outputs = [submitted.output]

    def queued_job(text: str) -> bool:
        return [(job["id"], job["state"]) for job in json.loads(text)] == [(1, "queued")]

    # each command: its exit code, and what it must show (the store's view; only reconcile needs the broker)
    expected: list[tuple[list[str], int, Callable[[str], bool]]] = [
        (["jobs"], 0, lambda out: re.search(r"^\s*1\s+mlp\s+queued\s", out, re.M) is not None),
        (["jobs", "--json"], 0, queued_job),
        (["show", "1"], 0, lambda out: re.search(r"^state\s+queued\s*$", out, re.M) is not None),
        (["show", "1", "--json"], 0, lambda out: queued_job(f"[{out}]")),
        (["dashboard", "--once"], 0, lambda out: "queued 1 " in out),
        (["dashboard", "--json"], 0, lambda out: json.loads(out)["queue"]["counts"]["queued"] == 1),
    ]
    for args, code, shows in expected:
        result = cli.invoke(main, args)
        assert (result.exit_code, result.stderr) == (code, ""), (args, result.output)
        assert shows(result.stdout), (args, result.stdout)
        outputs.append(result.output)
    reconciled = cli.invoke(main, ["reconcile"])
    assert reconciled.exit_code == 2, reconciled.output
    assert reconciled.stderr.startswith(f"error: broker {redacted} is unreachable: ")
    assert reconciled.stderr.count("\n") == 1
    outputs.append(reconciled.output)
    with pytest.raises(BrokerError) as unreachable:
        from trainyard.queue import check_broker

        check_broker(Settings.from_env())
    outputs.append(str(unreachable.value))
    assert all(password not in text for text in outputs)
