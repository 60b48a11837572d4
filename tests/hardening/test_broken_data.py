"""Broken data files: each is refused with a clear error before anything is queued, or, when the
file breaks after submit, the job ends ``failed`` with the reason (never a NaN loss, never a loop)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from trainyard.cli import main
from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.errors import DataError
from trainyard.scheduler import operations

SPEC = """\
name: broken
data:
  source: {source}
  split: {{valid: 0.25, test: 0.25, seed: 1}}
inputs: [a, b]
layers:
  - {{type: Dense, units: 4, activation: relu}}
outputs:
  y: {{target: y, loss: mean_squared_error}}
training: {{epochs: 2, batch_size: 8}}
"""

GOOD = "a,b,y\n" + "".join(f"{i},{i % 7},{2 * i}\n" for i in range(40))


def _parquet(path: Path) -> None:
    pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7, "y": np.arange(40.0) * 2}).to_parquet(path)


def _truncated_parquet(path: Path) -> None:
    _parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


WRITERS: dict[str, tuple[str, Callable[[Path], object], str]] = {
    # case: (file name, writer, words the one-line error must hold)
    "empty file": ("d.csv", lambda p: p.write_text(""), "is empty"),
    "header only": ("d.csv", lambda p: p.write_text("a,b,y\n"), "has a header but no rows"),
    "missing target column": (
        "d.csv",
        lambda p: p.write_text(GOOD.replace(",y\n", ",z\n", 1)),
        "outputs.y.target: unknown column 'y'",
    ),
    "text in a numeric column": (
        "d.csv",
        lambda p: p.write_text(GOOD.replace("\n5,5,10\n", "\n5,five,10\n")),
        "non-numeric value(s) such as 'five' (line 7)",
    ),
    "NaN": ("d.csv", lambda p: p.write_text(GOOD.replace("\n5,5,10\n", "\n5,nan,10\n")), "missing value(s) (line 7)"),
    "inf": ("d.csv", lambda p: p.write_text(GOOD.replace("\n5,5,10\n", "\n5,5,inf\n")), "infinite value(s) (line 7)"),
    "semicolon delimiter": ("d.csv", lambda p: p.write_text(GOOD.replace(",", ";")), "separated by ';'"),
    "ragged row": ("d.csv", lambda p: p.write_text(GOOD.replace("\n5,5,10\n", "\n5,5,10,1\n")), "line 7"),
    "truncated parquet": ("d.parquet", _truncated_parquet, "cannot read"),
    "path that does not exist": ("missing.csv", lambda p: None, "file not found"),
}


@pytest.fixture
def workdir(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The submitter's working directory, which holds the data (the default data root)."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.parametrize("case", list(WRITERS))
def test_a_broken_file_is_refused_at_submit_and_nothing_is_queued(case: str, workdir: Path) -> None:
    name, write, expected = WRITERS[case]
    write(workdir / name)
    spec = workdir / "spec.yaml"
    spec.write_text(SPEC.format(source=name))
    with pytest.raises(DataError) as refused:
        operations.submit([spec], dispatch=False)
    assert expected in str(refused.value), str(refused.value)
    assert all(p.path.startswith(("data.", "inputs.", "outputs.")) for p in refused.value.problems)
    assert Store.open(Settings.from_env().db_url).list_jobs() == []

    # The CLI: the same message, no traceback, exit 2.
    result = CliRunner().invoke(main, ["submit", "--no-dispatch", str(spec)])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output


def test_the_good_file_is_accepted(workdir: Path) -> None:
    """The control: the same spec on intact data is queued (so the refusals above are about the data)."""
    (workdir / "d.csv").write_text(GOOD)
    _parquet(workdir / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        spec = workdir / f"{name}.yaml"
        spec.write_text(SPEC.format(source=name))
        (job,) = operations.submit([spec], dispatch=False)
        assert job.state is JobState.QUEUED


@pytest.mark.slow
def test_a_200_mb_csv_with_one_bad_row_near_its_end_names_the_line(workdir: Path) -> None:
    rows = 200_000
    rng = np.random.default_rng(0)
    chunk = "".join(f"{a:.6f},{b:.6f},{y:.6f}\n" for a, b, y in rng.random((rows, 3)))
    chunks = (200 * 2**20) // len(chunk) + 1
    last = chunk.splitlines(keepends=True)
    last[-10] = "0.5,0.5x,0.5\n"
    path = workdir / "big.csv"
    with path.open("w") as fh:
        fh.write("a,b,y\n")
        for _ in range(chunks - 1):
            fh.write(chunk)
        fh.write("".join(last))
    bad_line = 1 + (chunks - 1) * rows + (rows - 10) + 1  # header, full chunks, rows before it, 1-based
    assert path.stat().st_size >= 200 * 2**20
    spec = workdir / "spec.yaml"
    spec.write_text(SPEC.format(source="big.csv"))
    with pytest.raises(DataError) as refused:
        operations.submit([spec], dispatch=False)
    assert f"non-numeric value(s) such as '0.5x' (line {bad_line})" in str(refused.value)
    assert Store.open(Settings.from_env().db_url).list_jobs() == []


@pytest.mark.parametrize("breakage", ["truncated", "removed", "text appended"])
def test_a_file_that_breaks_after_submit_fails_its_job_with_the_reason(breakage: str, workdir: Path) -> None:
    """Readable at submit, broken when a worker gets to it: ``failed`` with the reason, never retried."""
    from trainyard.worker import runner

    data = workdir / ("d.parquet" if breakage == "truncated" else "d.csv")
    _parquet(data) if breakage == "truncated" else data.write_text(GOOD)
    spec = workdir / "spec.yaml"
    spec.write_text(SPEC.format(source=data.name))
    (job,) = operations.submit([spec], dispatch=False)
    if breakage == "truncated":
        _truncated_parquet(data)
    elif breakage == "removed":
        data.unlink()
    else:
        with data.open("a") as fh:
            fh.write("1,one,2\n")
    settings = Settings.from_env()
    store = Store.open(settings.db_url)
    claimed = store.claim_next("broken@test/1", settings.lease_seconds)
    assert claimed is not None and claimed.id == job.id
    assert runner.run_job(store, claimed, "broken@test/1", settings) is JobState.FAILED
    failed = store.get_job(job.id)
    expected = "No such file or directory" if breakage == "removed" else "changed since submit"
    assert failed.state is JobState.FAILED and expected in (failed.error or "") and str(data) in failed.error
    assert failed.attempts == 1 and store.epochs(job.id) == []
