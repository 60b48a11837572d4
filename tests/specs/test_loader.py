"""load_spec and the spec document: sources, overrides, paths, data checks, fingerprints, staying TF-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from trainyard.errors import DataError, SpecError
from trainyard.specs import build_model, data_fingerprint, data_paths, load_data, load_spec, spec_from_document

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"

CSV_SPEC = """
name: own_csv
data: {source: data/table.csv, split: {valid: 0.25, test: 0.25, seed: 3}}
inputs: [a, b]
layers: [{type: Dense, units: 2, activation: relu}]
outputs: {y: {target: y}}
training: {epochs: 2, batch_size: 4}
"""


@pytest.fixture
def csv_spec(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    rows = "\n".join(f"{i},{i * 2},{i * 3}" for i in range(40))
    (tmp_path / "data" / "table.csv").write_text("a,b,y\n" + rows + "\n")
    path = tmp_path / "specs" / "own.yaml"
    path.parent.mkdir()
    path.write_text(CSV_SPEC.replace("data/table.csv", "../data/table.csv"))
    return path


@pytest.mark.parametrize("filename", ["mlp.yaml", "wide_deep.yaml", "multi_input.yaml", "multi_output.yaml"])
def test_document_round_trips_through_json(filename: str) -> None:
    spec = load_spec(SPECS / filename)
    doc = json.loads(json.dumps(spec.document()))
    assert spec_from_document(doc) == spec
    assert spec_from_document(doc).document() == doc
    # the document is explicit: every layer has its name and input
    assert all("name" in layer and "input" in layer for layer in doc["layers"])


def test_relative_data_paths_resolve_against_the_spec_folder(csv_spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    spec = load_spec(csv_spec)
    expected = (csv_spec.parent.parent / "data" / "table.csv").resolve()
    assert spec.document()["data"]["source"] == str(expected)
    assert data_paths(spec) == [expected]


def test_own_csv_splits_deterministically_into_disjoint_sets(csv_spec: Path) -> None:
    spec = load_spec(csv_spec)
    data = load_data(spec)
    assert (len(data.train), len(data.valid), len(data.test)) == (20, 10, 10)
    rows = np.concatenate(
        [data.train.x["features"][:, 0], data.valid.x["features"][:, 0], data.test.x["features"][:, 0]]
    )
    assert sorted(rows.tolist()) == list(range(40))
    assert np.array_equal(load_data(spec).valid.x["features"], data.valid.x["features"])
    assert np.array_equal(data.valid.y["y"][:, 0], data.valid.x["features"][:, 0] * 3)
    other = load_data(load_spec(csv_spec, overrides=["data.split.seed=4"]))
    assert not np.array_equal(other.valid.x["features"], data.valid.x["features"])


def test_fingerprint_changes_when_the_data_file_changes(csv_spec: Path) -> None:
    spec = load_spec(csv_spec)
    before = data_fingerprint(spec)
    assert data_fingerprint(spec) == before
    table = data_paths(spec)[0]
    table.write_text(table.read_text() + "40,80,120\n")
    assert data_fingerprint(spec) != before


def test_builtin_source_reads_no_file_and_has_a_stable_fingerprint() -> None:
    spec = load_spec(SPECS / "mlp.yaml")
    assert data_paths(spec) == []
    assert data_fingerprint(spec) == data_fingerprint(load_spec(SPECS / "mlp.yaml"))
    data = load_data(spec)
    assert (len(data.train), len(data.valid), len(data.test)) == (266, 88, 88)
    assert data.train.x["features"].dtype == np.float32 and data.train.x["features"].shape == (266, 10)


def test_overrides_set_nested_values_parsed_as_yaml() -> None:
    spec = load_spec(
        SPECS / "multi_output.yaml",
        overrides=["training.epochs=5", "layers[0].units=8", "training.optimizer={name: adam, learning_rate: 0.01}"],
    )
    assert spec.training.epochs == 5
    assert spec.layers[0].args["units"] == 8
    assert spec.training.optimizer.name == "adam" and spec.training.optimizer.args == {"learning_rate": 0.01}


def test_bad_overrides_name_their_path() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(SPECS / "mlp.yaml", overrides=["layers[9].units=3", "training.epochs", "training.epochs=-2"])
    paths = [p.path for p in caught.value.problems]
    assert paths == ["layers[9].units", "training.epochs"]
    with pytest.raises(SpecError, match=r"training.epochs: expected a positive integer, received -2"):
        load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=-2"])


@pytest.mark.parametrize(
    "index", ["²", "9" * 5000, "99999999999999999999"], ids=["superscript", "5000-digits", "2**66"]
)
def test_an_override_index_no_list_can_have_is_a_problem_not_a_traceback(index: str) -> None:
    """``"²".isdigit()`` is true but ``int("²")`` fails; ``int`` refuses 4,300 digits or more."""
    with pytest.raises(SpecError) as caught:
        load_spec(SPECS / "mlp.yaml", overrides=[f"layers[{index}].units=3"])
    assert len(caught.value.problems) == 1


def test_yaml_string_and_dict_sources_give_the_same_spec(csv_spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(csv_spec.parent.parent)
    import yaml

    from_text = load_spec(CSV_SPEC)
    from_dict = load_spec(yaml.safe_load(CSV_SPEC))
    assert from_text == from_dict
    assert from_text.data.source == str((csv_spec.parent.parent / "data" / "table.csv").resolve())


def test_sequential_shorthand_builds_the_same_model_as_the_explicit_form() -> None:
    short = load_spec(SPECS / "mlp.yaml")
    explicit = load_spec(
        {
            "name": "explicit",
            "data": {"source": "builtin:diabetes"},
            "inputs": {"features": {"columns": short.inputs["features"].columns}},
            "layers": [
                {"name": f"h{i}", "type": "Dense", "units": units, "activation": "relu", "input": source}
                for i, (units, source) in enumerate([(5, "features"), (4, "h0"), (3, "h1")])
            ],
            "outputs": {"output": {"target": "target", "input": "h2"}},
            "training": {"epochs": 1},
        }
    )
    a, b = build_model(short), build_model(explicit)
    assert [type(x).__name__ for x in a.layers] == [type(x).__name__ for x in b.layers]
    assert [x.count_params() for x in a.layers] == [x.count_params() for x in b.layers]


def test_california_housing_missing_and_text_values_are_a_data_error(california_csv: Path) -> None:
    doc = {
        "name": "housing",
        "data": {"source": str(california_csv)},
        "inputs": ["median_income", "total_bedrooms", "ocean_proximity"],
        "outputs": {"value": {"target": "median_house_value"}},
        "training": {"epochs": 1},
    }
    with pytest.raises(DataError) as caught:
        load_spec(doc)
    problems = {p.path: p.message for p in caught.value.problems}
    assert set(problems) == {"inputs.features.columns[1]", "inputs.features.columns[2]"}
    assert problems["inputs.features.columns[1]"].startswith(
        "column 'total_bedrooms' has 207 missing value(s) (lines 292, 343, 540, ...)"
    )
    assert problems["inputs.features.columns[2]"].startswith(
        "column 'ocean_proximity' has 20640 non-numeric value(s) such as 'NEAR BAY'"
    )
    # without the data checks the spec itself is fine (the worker checks again before training)
    assert load_spec(doc, check_data=False).inputs["features"].columns[1] == "total_bedrooms"


def test_parquet_source_with_missing_values_names_rows(tmp_path: Path) -> None:
    import pandas as pd

    pd.DataFrame({"a": [1.0, None, 3.0, 4.0, 5.0], "y": [1.0, 2.0, 3.0, 4.0, 5.0]}).to_parquet(tmp_path / "t.parquet")
    doc = {
        "name": "p",
        "data": {"source": "t.parquet"},
        "inputs": ["a"],
        "outputs": {"y": {"target": "y"}},
        "training": {"epochs": 1},
    }
    (tmp_path / "s.yaml").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"inputs.features.columns\[0\]: column 'a' has 1 missing value\(s\) \(row 1\)"):
        load_spec(tmp_path / "s.yaml")


def test_spec_from_document_rejects_a_broken_document() -> None:
    doc = load_spec(SPECS / "mlp.yaml").document()
    doc["layers"][1]["input"] = "nowhere"
    with pytest.raises(SpecError, match=r"layers\[1\].input: unknown layer or input 'nowhere'"):
        spec_from_document(doc)


def test_loading_and_checking_a_spec_does_not_import_tensorflow() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from trainyard.specs import load_spec, data_fingerprint, load_data, spec_from_document
        spec = load_spec({str(SPECS / "multi_output.yaml")!r})
        spec_from_document(spec.document()); data_fingerprint(spec); load_data(spec)
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
