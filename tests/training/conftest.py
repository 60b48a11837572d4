"""Small specs and data for training tests: a few epochs on a few hundred rows."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def housing_csv(tmp_path_factory: pytest.TempPathFactory, california_csv: Path) -> Path:
    """400 clean rows of the California housing data (numeric columns without missing values)."""
    import pandas as pd

    frame = pd.read_csv(california_csv).dropna().head(400)
    frame["median_house_value"] /= 100_000  # a target scale where a few epochs of SGD stay finite
    path = tmp_path_factory.mktemp("data") / "housing.csv"
    frame.drop(columns=["ocean_proximity"]).to_csv(path, index=False)
    return path
