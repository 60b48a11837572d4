"""Hostile specs and hostile workers' inputs: no code from a spec, no file outside the data roots,
no password on a screen or in a log. (Pickle refused by a worker: see test_faults.py, Redis outage.)"""

from __future__ import annotations

import ast
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import trainyard
from trainyard.cli import main
from trainyard.config import Settings
from trainyard.db import JobState, Store
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

HOSTILE_LAYERS: dict[str, tuple[dict[str, Any], str]] = {
    "Lambda": ({"type": "Lambda", "function": "lambda x: __import__('os').system('id')"}, "layers[0].type"),
    "custom object": (
        {"type": "Dense", "units": 4, "kernel_initializer": {"class_name": "Evil", "module": "evil", "config": {}}},
        "layers[0].kernel_initializer",
    ),
    "registered name": (
        {"type": "Dense", "units": 4, "activation": {"registered_name": "evil>Act"}},
        "layers[0].activation",
    ),
    "module path as type": ({"type": "os.system"}, "layers[0].type"),
    "keras path as type": ({"type": "keras.layers.Dense", "units": 4}, "layers[0].type"),
    "TFSMLayer (loads a saved model)": ({"type": "TFSMLayer"}, "layers[0].type"),
    "not a keras.layers class": ({"type": "Sequential"}, "layers[0].type"),
    "dunder": ({"type": "__class__"}, "layers[0].type"),
    "Wrapper": ({"type": "TimeDistributed", "layer": "Dense"}, "layers[0].type"),
    "module path as activation": ({"type": "Dense", "units": 4, "activation": "os.system"}, "layers[0]"),
}


@pytest.mark.parametrize("case", list(HOSTILE_LAYERS))
def test_a_spec_asking_for_code_is_refused_and_nothing_is_stored(case: str, home: Path) -> None:
    layer, path = HOSTILE_LAYERS[case]
    with pytest.raises(SpecError) as refused:
        operations.submit([{**SPEC, "layers": [layer]}], dispatch=False)  # type: ignore[list-item]
    assert any(p.path.startswith(path) for p in refused.value.problems), refused.value.problems
    assert Store.open(Settings.from_env().db_url).list_jobs() == []


def test_every_model_load_in_trainyard_uses_safe_mode() -> None:
    """Any ``load_model(...)`` call in the package passes ``safe_mode=True`` (unsafe loading of a
    ``Lambda`` runs code). trainyard itself loads no model today; this keeps it that way or safe."""
    offenders = []
    for source in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in ("load_model", "load_weights_only", "model_from_json", "deserialize_keras_object"):
                    safe = any(
                        k.arg == "safe_mode" and isinstance(k.value, ast.Constant) and k.value.value is True
                        for k in node.keywords
                    )
                    if not safe:
                        offenders.append(f"{source.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert offenders == []


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
    assert Store.open(Settings.from_env().db_url).get_job(job.id).spec_document["data_roots"] == [
        str(layout["work"].resolve())
    ]


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
    document[operations.DATA_ROOTS_KEY] = roots
    (job,) = store.add_jobs([document])
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
    cli = CliRunner()
    submitted = cli.invoke(main, ["submit", str(Path(__file__).parents[2] / "specs" / "mlp.yaml")])
    assert submitted.exit_code == 2 and f"redis://:***@127.0.0.1:{port}/0" in submitted.output, submitted.output
    outputs = [submitted.output]
    for args in (
        ["jobs"],
        ["jobs", "--json"],
        ["show", "1"],
        ["show", "1", "--json"],
        ["dashboard", "--once"],
        ["dashboard", "--json"],
        ["reconcile"],
    ):
        result = cli.invoke(main, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.output)
        outputs.append(result.output)
    with pytest.raises(BrokerError) as unreachable:
        from trainyard.queue import check_broker

        check_broker(Settings.from_env())
    outputs.append(str(unreachable.value))
    assert all(password not in text for text in outputs)
