"""``require_shared``: tests reading ``../shared`` skip on a laptop without it, and fail in CI."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def _conftest(monkeypatch: pytest.MonkeyPatch, *, ci: bool) -> ModuleType:
    """The root conftest as a module of its own, with ``IN_CI`` set as a CI run or a laptop would."""
    spec = importlib.util.spec_from_file_location("_root_conftest", Path(__file__).with_name("conftest.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "IN_CI", ci)
    return module


def test_missing_shared_data_fails_in_ci_and_skips_on_a_laptop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "datasets" / "california_housing.csv"
    with pytest.raises(
        pytest.fail.Exception, match=r"california_housing\.csv not found: .*\(CI=true: \.\./shared is required\)"
    ):
        _conftest(monkeypatch, ci=True).require_shared(missing)
    with pytest.raises(pytest.skip.Exception, match=r"california_housing\.csv not found: this test needs .*shared"):
        _conftest(monkeypatch, ci=False).require_shared(missing)
    missing.parent.mkdir()
    missing.write_text("a,b\n1,2\n")
    assert _conftest(monkeypatch, ci=True).require_shared(missing) == missing
