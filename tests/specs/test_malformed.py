"""A corpus of malformed specs: each file says, in its first comment lines, which paths must be named.

``# expect: a | b`` lists the exact set of problem paths; ``# says:`` a text one of the messages
must contain; ``# error: DataError`` when the file's problems are all about its data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trainyard.errors import DataError, SpecError
from trainyard.specs import load_spec, validate_spec

CORPUS = Path(__file__).resolve().parent / "malformed"
FILES = sorted(CORPUS.glob("*.yaml"))


def _header(path: Path) -> dict[str, str]:
    header = {}
    for line in path.read_text().splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(":")
        header[key.strip()] = value.strip()
    return header


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 25


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_malformed_spec_names_every_problem_path(path: Path) -> None:
    header = _header(path)
    expected = {p.strip() for p in header["expect"].split("|")}
    try:
        spec = load_spec(path)
    except SpecError as exc:
        error = exc
        assert error.source == str(path)  # problems found while loading name the file
    else:
        with pytest.raises(SpecError) as caught:
            validate_spec(spec)
        error = caught.value
    problems = error.problems
    assert {p.path for p in problems} == expected, str(error)
    if "says" in header:
        assert any(header["says"] in p.message for p in problems), str(error)
    assert isinstance(error, DataError) == (header.get("error") == "DataError"), type(error)
    # the rendered error shows each problem as "path: message"
    for problem in problems:
        assert str(problem) in str(error)
