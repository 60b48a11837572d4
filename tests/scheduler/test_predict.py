"""``trainyard predict`` and ``trainyard.predict``: a trained job's model on files of raw rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import trainyard
from trainyard.cli import main
from trainyard.config import Settings
from trainyard.db import Store
from trainyard.db.records import JobState
from trainyard.errors import DataError
from trainyard.scheduler.prediction import open_predictor, predict_file


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(["Paris", "Lyon", "Nice", None], size=n, p=[0.4, 0.3, 0.2, 0.1])
    zone = rng.integers(1, 6, size=n)
    size = rng.normal(50, 10, size=n)
    size[rng.random(n) < 0.1] = np.nan
    price = np.nan_to_num(size, nan=50) * 0.1 + zone + (city == "Paris") * 2 + rng.normal(0, 0.1, size=n)
    return pd.DataFrame({"id": np.arange(n), "city": city, "zone": zone, "size": size, "price": price})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    from trainyard.specs import load_spec
    from trainyard.training import train

    folder = tmp_path_factory.mktemp("predict")
    _rows(300, 5).to_csv(folder / "train.csv", index=False)
    spec = load_spec(
        {
            "name": "cities",
            "data": {"source": str(folder / "train.csv")},
            "inputs": {
                "size": {"columns": ["size"], "missing": "mean", "missing_indicator": True, "normalize": True},
                "place": {"columns": ["city", "zone"], "type": "category"},
            },
            "layers": [{"type": "Concatenate", "input": ["size", "place"]}, {"type": "Dense", "units": 4}],
            "outputs": {"price": {"target": "price"}},
            "training": {"epochs": 3, "optimizer": {"name": "adam", "learning_rate": 0.05}},
        }
    )
    result = train(spec, model_path=folder / "cities.keras")
    new = _rows(50, 9).drop(columns=["price"])
    new.loc[0, "city"] = "Atlantis"  # never seen in training
    new.loc[1, "zone"] = 99
    new.loc[2, ["size", "city", "zone"]] = [np.nan, None, np.nan]
    new["extra"] = "ignored"
    new.to_csv(folder / "new.csv", index=False)
    return spec, result.model_path, folder


@pytest.fixture
def job(home: Path, trained) -> int:
    spec, model_path, _ = trained
    store = Store.open(Settings.from_env().db_url)
    (record,) = store.add_jobs([spec.document()])
    store.claim_next("w")
    store.finish(record.id, "w", JobState.SUCCEEDED, model_path=str(model_path))
    return record.id


def _plain_keras(model_path: Path, spec, frame: pd.DataFrame) -> np.ndarray:
    """What a user of plain Keras does: load in safe mode, feed the raw columns (strings as tf.string)."""
    import keras
    import tensorflow as tf

    from trainyard.specs import model_inputs

    model = keras.saving.load_model(model_path, safe_mode=True)
    x = model_inputs(spec.inputs, frame)
    return model.predict({k: tf.constant(v) for k, v in x.items()}, verbose=0)["price"][:, 0]


def test_predict_writes_kept_columns_and_predictions_equal_to_plain_keras(job: int, trained, tmp_path: Path) -> None:
    spec, model_path, folder = trained
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(
        main, ["predict", str(job), str(folder / "new.csv"), "--out", str(out), "--keep", "id"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    written = pd.read_csv(out)
    assert list(written.columns) == ["id", "price"]
    assert written["id"].tolist() == list(range(50))
    expected = _plain_keras(model_path, spec, pd.read_csv(folder / "new.csv"))
    assert np.isfinite(written["price"]).all()  # unseen categories and NaN give predictions
    assert np.allclose(written["price"], expected, rtol=1e-6)


def test_predict_without_out_prints_csv_and_reads_parquet(job: int, trained, tmp_path: Path) -> None:
    spec, model_path, folder = trained
    frame = pd.read_csv(folder / "new.csv")
    frame.to_parquet(tmp_path / "new.parquet")
    result = CliRunner().invoke(main, ["predict", str(job), str(tmp_path / "new.parquet")], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    from io import StringIO

    printed = pd.read_csv(StringIO(result.stdout))
    assert list(printed.columns) == ["price"]
    assert np.allclose(printed["price"], _plain_keras(model_path, spec, frame), rtol=1e-6)

    out = tmp_path / "p.parquet"
    result = CliRunner().invoke(main, ["predict", str(job), str(folder / "new.csv"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    assert '"rows": 50' in result.stdout and pd.read_parquet(out)["price"].tolist() == pytest.approx(
        printed["price"].tolist(), rel=1e-6
    )


def test_chunks_give_the_same_predictions_as_one_pass(job: int, trained, tmp_path: Path) -> None:
    _, _, folder = trained
    predictor = open_predictor(job)
    seen: list[int] = []
    predict_file(
        predictor, folder / "new.csv", out=tmp_path / "a.csv", chunk_rows=7, progress=lambda r, f: seen.append(r)
    )
    predict_file(predictor, folder / "new.csv", out=tmp_path / "b.csv", chunk_rows=1000)
    assert seen == [7, 14, 21, 28, 35, 42, 49, 50]
    assert pd.read_csv(tmp_path / "a.csv").equals(pd.read_csv(tmp_path / "b.csv"))


def test_a_missing_input_column_is_exit_2_naming_it_and_nothing_is_written(job: int, trained, tmp_path: Path) -> None:
    _, _, folder = trained
    pd.read_csv(folder / "new.csv").drop(columns=["zone"]).to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "out" / "p.csv"
    result = CliRunner().invoke(main, ["predict", str(job), str(tmp_path / "bad.csv"), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("missing column 'zone' (the model takes: size, city, zone)")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.parent.exists()


def test_a_bad_value_late_in_the_file_leaves_no_half_written_output(job: int, trained, tmp_path: Path) -> None:
    _, _, folder = trained
    frame = pd.read_csv(folder / "new.csv")
    frame["size"] = frame["size"].astype(object)
    frame.loc[45, "size"] = "huge"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"column 'size' has 1 non-numeric value\(s\) such as 'huge' \(line 47\)"):
        predict_file(open_predictor(job), tmp_path / "bad.csv", out=tmp_path / "out" / "p.csv", chunk_rows=10)
    assert list((tmp_path / "out").iterdir()) == []


def test_the_python_api_returns_a_dataframe(job: int, trained) -> None:
    spec, model_path, folder = trained
    frame = pd.read_csv(folder / "new.csv").set_index("id")
    predicted = trainyard.predict(job, frame)
    assert list(predicted.columns) == ["price"] and predicted.index.equals(frame.index)
    assert np.allclose(predicted["price"], _plain_keras(model_path, spec, frame), rtol=1e-6)


def test_an_unknown_job_or_a_job_without_model_is_one_line(home: Path, trained, tmp_path: Path) -> None:
    spec, _, folder = trained
    result = CliRunner().invoke(main, ["predict", "999", str(folder / "new.csv")])
    assert result.exit_code == 2 and result.stderr.strip() == "error: no job with id 999"
    (record,) = Store.open(Settings.from_env().db_url).add_jobs([spec.document()])
    result = CliRunner().invoke(main, ["predict", str(record.id), str(folder / "new.csv")])
    assert result.exit_code == 2 and result.stderr.strip() == f"error: job {record.id} is queued: it has no model yet"


def test_show_documents_the_models_input_names_and_dtypes(job: int) -> None:
    result = CliRunner().invoke(main, ["show", str(job), "--json"], catch_exceptions=False)
    import json

    assert json.loads(result.stdout)["model_inputs"] == {
        "size": {"dtype": "float32", "shape": [None, 1], "columns": ["size"], "type": "numeric"},
        "place": {"dtype": "string", "shape": [None, 2], "columns": ["city", "zone"], "type": "category"},
    }
    shown = CliRunner().invoke(main, ["show", str(job)], env={"COLUMNS": "200"}, catch_exceptions=False).stdout
    assert "size: float32 (rows, 1) of size; place: string (rows, 2) of city, zone" in shown


def test_a_model_file_with_code_in_it_is_refused_by_safe_mode(home: Path, tmp_path: Path) -> None:
    import json
    import zipfile

    import keras

    marker = tmp_path / "ran"
    x = keras.Input((1,), name="size")
    code = eval(f"lambda t: t * 2 + (open({str(marker)!r}, 'w').close() or 0)")  # the path inside the bytecode
    y = keras.layers.Lambda(code)(x)
    marker.unlink(missing_ok=True)  # building the model ran it once; loading must not
    evil = tmp_path / "evil.keras"
    keras.Model(x, {"price": keras.layers.Dense(1, name="price")(y)}).save(evil)
    with zipfile.ZipFile(evil, "a") as archive:
        archive.writestr("trainyard.json", json.dumps({"inputs": {"size": {"columns": ["size"]}}}))
    pd.DataFrame({"size": [1.0]}).to_csv(tmp_path / "d.csv", index=False)
    result = CliRunner().invoke(main, ["predict", str(evil), str(tmp_path / "d.csv")])
    assert result.exit_code == 2
    assert f"cannot load '{evil}' (in safe mode)" in result.stderr and "Lambda" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def test_a_model_file_alone_predicts_the_same_as_its_job(job: int, trained, tmp_path: Path) -> None:
    _, model_path, folder = trained
    by_job, by_file = tmp_path / "job.csv", tmp_path / "file.csv"
    for source, out in ((str(job), by_job), (str(model_path), by_file)):
        result = CliRunner().invoke(main, ["predict", source, str(folder / "new.csv"), "--out", str(out)])
        assert result.exit_code == 0, result.stderr
    assert pd.read_csv(by_job).equals(pd.read_csv(by_file))
    assert trainyard.predict(model_path, pd.read_csv(folder / "new.csv"))["price"].tolist() == pytest.approx(
        pd.read_csv(by_file)["price"].tolist(), rel=1e-6
    )


def test_a_keras_file_without_trainyards_record_is_one_line(home: Path, tmp_path: Path) -> None:
    import keras

    x = keras.Input((1,), name="size")
    keras.Model(x, {"price": keras.layers.Dense(1, name="price")(x)}).save(tmp_path / "other.keras")
    pd.DataFrame({"size": [1.0]}).to_csv(tmp_path / "d.csv", index=False)
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "other.keras"), str(tmp_path / "d.csv")])
    assert result.exit_code == 2
    assert "does not record the columns its inputs take" in result.stderr


def test_binary_and_category_outputs_give_probabilities_and_labels(home: Path, tmp_path: Path) -> None:
    from trainyard.specs import load_spec
    from trainyard.training import train

    frame = _rows(200, 3)
    frame["expensive"] = np.where(frame["price"] > frame["price"].median(), "yes", "no")
    frame["band"] = pd.cut(frame["price"], 3, labels=["low", "mid", "high"]).astype(str)
    frame.to_csv(tmp_path / "t.csv", index=False)
    spec = load_spec(
        {
            "name": "classes",
            "data": {"source": str(tmp_path / "t.csv")},
            "inputs": {
                "size": {"columns": ["size"], "missing": "median", "normalize": True},
                "city": {"columns": ["city"], "type": "category"},
            },
            "layers": [{"type": "Concatenate", "input": ["size", "city"]}, {"type": "Dense", "units": 4}],
            "outputs": {
                "expensive": {"target": "expensive", "type": "binary"},
                "band": {"target": "band", "type": "category"},
            },
            "training": {"epochs": 2, "optimizer": {"name": "adam", "learning_rate": 0.05}},
        }
    )
    model_path = train(spec, model_path=tmp_path / "m.keras").model_path
    rows = frame.drop(columns=["price", "expensive", "band"]).head(20)
    predicted = trainyard.predict(model_path, rows)
    assert list(predicted.columns) == ["expensive", "band", "band_proba_high", "band_proba_low", "band_proba_mid"]
    probabilities = predicted[["band_proba_high", "band_proba_low", "band_proba_mid"]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert predicted["band"].tolist() == [["high", "low", "mid"][i] for i in probabilities.argmax(axis=1)]
    assert ((predicted["expensive"] >= 0) & (predicted["expensive"] <= 1)).all()

    import keras
    import tensorflow as tf

    from trainyard.specs import model_inputs

    plain = keras.saving.load_model(model_path, safe_mode=True).predict(
        {k: tf.constant(v) for k, v in model_inputs(spec.inputs, rows).items()}, verbose=0
    )
    assert np.allclose(predicted["expensive"], plain["expensive"][:, 0], rtol=1e-5)
    assert np.allclose(probabilities, plain["band"], rtol=1e-5)
