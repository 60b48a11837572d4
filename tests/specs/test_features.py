"""Typed input features: the spec keys, the data checks, raw rows -> model inputs, what validate shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from trainyard.cli import main
from trainyard.errors import DataError, SpecError
from trainyard.specs import fit_inputs, input_stats, load_data, load_spec, model_inputs, validate_spec

ROWS = """\
size,rooms,city,zone,price
10,1,Paris,1,100
20,,Lyon,2,210
30,3,Paris,,290
,4,Nice,1,420
50,5,,2,480
60,6,Paris,3,590
70,7,Lyon,1,720
80,8,Paris,2,790
"""


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(ROWS)
    return path


def spec_doc(source: Path, **inputs: dict) -> dict:
    return {
        "name": "t",
        "data": {"source": str(source), "split": {"valid": 0.25, "test": 0.0, "seed": 3}},
        "inputs": inputs,
        "outputs": {"price": {"target": "price", "input": "all"}},
        "layers": [{"name": "all", "type": "Concatenate", "input": list(inputs)}],
        "training": {"epochs": 1},
    }


NUMBERS = {"columns": ["size", "rooms"], "missing": "median", "normalize": True}


def test_category_and_imputed_inputs_load_and_become_what_validate_says(table: Path) -> None:
    doc = spec_doc(table, numbers=NUMBERS, place={"columns": ["city", "zone"], "type": "category"})
    spec = load_spec(doc)
    data = load_data(spec)
    assert data.train.x["numbers"].dtype == np.float32 and data.train.x["place"].dtype == object
    stats = input_stats(spec)
    train = data.train.x
    size, rooms = stats["numbers"].columns
    assert size.fill == float(np.nanmedian(train["numbers"][:, 0]))
    filled = np.where(np.isnan(train["numbers"][:, 1]), rooms.fill, train["numbers"][:, 1])
    assert rooms.mean == pytest.approx(filled.mean()) and rooms.variance == pytest.approx(filled.var())
    city, zone = stats["place"].columns
    # the vocabulary is the training split's, most frequent first; a missing value is a value ("")
    values, counts = np.unique(train["place"][:, 0], return_counts=True)
    assert set(city.vocabulary) == set(values) and counts.max() == (train["place"][:, 0] == city.vocabulary[0]).sum()
    assert all(v in {"1", "2", "3", ""} for v in zone.vocabulary)  # integers as their text, 1.0 -> "1"
    # one-hot per column, vocabulary + out-of-vocabulary, concatenated; numbers stay 2 wide
    summary = validate_spec(spec)
    widths = {layer.name: layer.output_shape[-1] for layer in summary.layers}
    assert widths["place_features"] == len(city.vocabulary) + 1 + len(zone.vocabulary) + 1
    assert widths["all"] == 2 + widths["place_features"]
    shown = dict((c, text) for c, _, text in stats["numbers"].describe())
    assert shown["size"].startswith(f"1 missing -> {size.fill:.4g} (median)") or shown["size"].startswith("0 missing")


def test_missing_indicator_and_embedding_widths(table: Path) -> None:
    doc = spec_doc(
        table,
        numbers={**NUMBERS, "missing_indicator": True},
        city={"columns": ["city"], "type": "category", "encoding": "embedding", "embedding_dim": 3},
    )
    summary = validate_spec(load_spec(doc))
    widths = {layer.name: layer.output_shape[-1] for layer in summary.layers}
    assert widths["numbers_features"] == 4 and widths["city_flatten"] == 3 and widths["all"] == 7
    types = {layer.name: layer.type for layer in summary.layers}
    assert types["numbers_impute"] == "Impute" and types["numbers_missing"] == "MissingIndicator"
    assert types["city_embedding"] == "Embedding"


def test_model_inputs_turns_raw_rows_into_the_models_arrays(table: Path) -> None:
    spec = load_spec(spec_doc(table, numbers=NUMBERS, place={"columns": ["zone", "city"], "type": "category"}))
    frame = pd.DataFrame({"zone": [1.0, np.nan, 7.0], "city": ["Paris", None, "Oslo"], "size": [1, 2, np.nan]})
    frame["rooms"] = [1.5, np.nan, 3]
    frame["unused"] = "x"
    x = model_inputs(spec.inputs, frame)
    assert x["place"].tolist() == [["1", "Paris"], ["", ""], ["7", "Oslo"]]
    assert np.array_equal(x["numbers"], np.array([[1, 1.5], [2, np.nan], [np.nan, 3]], np.float32), equal_nan=True)
    with pytest.raises(DataError) as missing:
        model_inputs(spec.inputs, frame.drop(columns=["city", "rooms"]))
    assert str(missing.value) == "missing columns 'rooms', 'city' (the model's inputs take: size, rooms, zone, city)"


def test_numeric_input_without_a_missing_rule_still_refuses_missing_values(table: Path) -> None:
    with pytest.raises(DataError) as refused:
        load_spec(spec_doc(table, numbers={"columns": ["size"]}))
    assert str(refused.value).startswith("inputs.numbers.columns[0]: column 'size' has 1 missing value(s) (line 5)")
    assert "set `missing: median`" in str(refused.value)


def test_a_text_column_used_as_numbers_gets_the_category_hint(table: Path) -> None:
    with pytest.raises(DataError) as refused:
        load_spec(spec_doc(table, numbers={"columns": ["size", "city"], "missing": "zero"}))
    (problem,) = refused.value.problems
    assert problem.path == "inputs.numbers.columns[1]"
    assert "non-numeric value(s) such as 'Paris'" in problem.message
    assert "declare it `type: category`" in problem.message


def test_a_few_bad_values_in_a_numeric_column_get_no_category_hint(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(ROWS.replace("\n60,6,", "\n6O,6,"))
    with pytest.raises(DataError) as refused:
        load_spec(spec_doc(path, numbers=NUMBERS))
    assert "such as '6O'" in str(refused.value) and "category" not in str(refused.value)


def test_max_categories_keeps_the_most_frequent_values(table: Path) -> None:
    spec = load_spec(spec_doc(table, city={"columns": ["city"], "type": "category", "max_categories": 1}))
    (city,) = input_stats(spec)["city"].columns
    assert city.vocabulary == ("Paris",) and city.distinct > 1
    (_, _, text), *_ = input_stats(spec)["city"].describe()
    assert f"truncated: {city.distinct} distinct, the 1 most frequent kept (max_categories)" in text


def test_statistics_come_from_the_training_split_only(table: Path) -> None:
    spec = load_spec(spec_doc(table, numbers=NUMBERS))
    data = load_data(spec)
    fitted = fit_inputs(spec.inputs, data.train.x)["numbers"].columns[0]
    everything = fit_inputs(
        spec.inputs, {"numbers": np.concatenate([data.train.x["numbers"], data.valid.x["numbers"]])}
    )
    assert fitted.fill == float(np.nanmedian(data.train.x["numbers"][:, 0]))
    assert fitted.mean != everything["numbers"].columns[0].mean


@pytest.mark.parametrize(
    ("inputs", "path", "message"),
    [
        ({"columns": ["size"], "type": "categorical"}, "inputs.x.type", "unknown input type 'categorical' (did you mean 'category'?)"),
        ({"columns": ["city"], "type": "category", "encoding": "onehot"}, "inputs.x.encoding", "unknown encoding 'onehot' (did you mean 'one_hot'?)"),
        ({"columns": ["size"], "missing": "average"}, "inputs.x.missing", "unknown missing-value rule 'average' (expected one of: mean, median, zero, constant)"),
        ({"columns": ["size"], "missing": {"constant": "x"}}, "inputs.x.missing", "expected {constant: <a finite number>}, received {constant: 'x'}"),
        ({"columns": ["city"], "type": "category", "normalize": True}, "inputs.x", "normalize does not apply to a category input (type: category)"),
        ({"columns": ["size"], "encoding": "embedding"}, "inputs.x", "encoding does not apply to a numeric input (type: numeric)"),
        ({"columns": ["size"], "missing_indicator": True}, "inputs.x", "missing_indicator needs `missing`"),
        ({"columns": ["city"], "type": "category", "embedding_dim": 4}, "inputs.x", "embedding_dim needs `encoding: embedding`"),
        ({"columns": ["city"], "type": "category", "max_categories": 0}, "inputs.x.max_categories", "expected a positive integer, received 0"),
    ],
)  # fmt: skip
def test_bad_input_keys_are_one_problem_with_its_path(table: Path, inputs: dict, path: str, message: str) -> None:
    with pytest.raises(SpecError) as refused:
        load_spec(spec_doc(table, x=inputs))
    assert [p.path for p in refused.value.problems] == [path]
    assert refused.value.problems[0].message.startswith(message)


def test_validate_cli_shows_each_column_and_exits_2_on_an_unknown_type(table: Path, tmp_path: Path) -> None:
    import yaml

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(spec_doc(table, numbers=NUMBERS, city={"columns": ["city"], "type": "category"})))
    result = CliRunner().invoke(main, ["validate", str(good)], catch_exceptions=False, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "what each column becomes" in result.stdout
    assert "(median); normalized (mean" in result.stdout
    assert "values + out-of-vocabulary;" in result.stdout and "one-hot (" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec_doc(table, city={"columns": ["city"], "type": "text"})))
    result = CliRunner().invoke(main, ["validate", str(bad)], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[1:] == [
        "  inputs.city.type: unknown input type 'text' (expected one of: numeric, category)"
    ]


def test_csv_read_options_reach_pandas_and_a_semicolon_file_gets_one_hint(tmp_path: Path) -> None:
    path = tmp_path / "eu.csv"
    path.write_bytes("größe;zone;price\n1,5;Zürich;10\n2,5;-;20\n3,5;Genève;30\n4,5;Zürich;40\n".encode("latin-1"))
    doc = spec_doc(path, g={"columns": ["größe"]}, z={"columns": ["zone"], "type": "category"})
    with pytest.raises(DataError) as refused:
        load_spec(doc)
    (problem,) = refused.value.problems  # one hint, not one per column
    assert problem.path == "data.source" and "data.csv.encoding" in problem.message

    doc["data"]["csv"] = {"encoding": "latin-1"}
    with pytest.raises(DataError) as refused:
        load_spec(doc)
    (problem,) = refused.value.problems
    assert problem.path == "data.source"
    assert problem.message.endswith(
        "has a single column (it seems to be separated by ';', not commas): set `data.csv: {sep: ';'}`"
    )

    doc["data"]["csv"] = {"sep": ";", "decimal": ",", "encoding": "latin-1", "na_values": ["-"]}
    spec = load_spec(doc)
    data = load_data(spec)
    rows = np.concatenate([data.train.x["g"], data.valid.x["g"]])[:, 0]
    assert sorted(rows.tolist()) == [1.5, 2.5, 3.5, 4.5]
    zones = set(np.concatenate([data.train.x["z"], data.valid.x["z"]])[:, 0])
    assert zones == {"Zürich", "Genève", ""}  # "-" is missing: its own value


def test_category_values_are_the_same_text_whatever_pandas_read_them_as() -> None:
    from trainyard.specs.features import category_text

    as_int = category_text(pd.Series([1, 2, 3]))
    as_float = category_text(pd.Series([1.0, np.nan, 3.0]))
    as_objects = category_text(pd.Series([1, None, 3.0, True, "x"], dtype=object))
    as_bool = category_text(pd.Series([True, False]))
    assert as_int.tolist() == ["1", "2", "3"]
    assert as_float.tolist() == ["1", "", "3"]
    assert as_objects.tolist() == ["1", "", "3", "true", "x"]
    assert as_bool.tolist() == ["true", "false"]
