"""The exceptions trainyard raises. Catch :class:`TrainyardError` to catch them all."""

from __future__ import annotations

from dataclasses import dataclass

from trainyard import defaults


class TrainyardError(Exception):
    """Root of every error trainyard raises on purpose; the CLI prints it and exits 2."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where it is (``layers[2].units``) and what is wrong."""

    path: str
    message: str

    def __post_init__(self) -> None:
        # one problem is one line: a huge key or value never turns into a huge message
        object.__setattr__(self, "path", cut(self.path, defaults.PROBLEM_MAX_CHARS // 2))
        object.__setattr__(self, "message", cut(self.message))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def cut(text: str, limit: int = defaults.PROBLEM_MAX_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 30, 10)]}... ({len(text):,} characters)"


class SpecError(TrainyardError):
    """A job spec is invalid: YAML syntax, schema, layer graph or data. Carries every problem found.

    ``problems`` lists each one with its path inside the spec; ``source`` names the file.
    """

    def __init__(self, problems: list[Problem] | Problem | str, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return head + str(self.problems[0])
        lines = [f"{head}{len(self.problems)} problems"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class DataError(SpecError):
    """The data a spec points at is missing, unreadable, or has missing/non-numeric values in a used column."""


class StoreError(TrainyardError):
    """The job store cannot be reached or refused an operation (the message names the database)."""


class StoreUnavailable(StoreError):
    """The job store cannot be reached, or dropped the connection (a server restarting, a network
    gone, a SQLite file locked for too long): worth trying again later. To a worker it interrupts
    an attempt; it is never a verdict on the job."""


class JobNotFound(StoreError):
    """A job id given by the user does not exist in the store."""

    def __init__(self, job_id: object) -> None:
        super().__init__(f"no job with id {short_value(job_id)}")
        self.job_id = job_id


class SweepNotFound(StoreError):
    """A sweep id given by the user does not exist in the store."""

    def __init__(self, sweep_id: object) -> None:
        super().__init__(f"no sweep with id {short_value(sweep_id)}")
        self.sweep_id = sweep_id


def short_value(value: object, keep: int = 24) -> str:
    """A value the user gave, for a message: ``12``, ``'banana'``; a long one cut to a prefix."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() <= 80:
            return str(value)
        return f"<a number of about {int(value.bit_length() * 0.30103) + 1} digits>"  # str() refuses 4,300+
    text = str(value)
    if len(text) <= keep:
        return repr(text)
    return f"{text[:keep]!r}... ({len(text)} characters)"


class InvalidTransition(StoreError):
    """A job cannot move to the requested state (cancel a finished job, retry a running one...)."""


class BrokerError(TrainyardError):
    """The message broker cannot be reached (the message names it, without its password)."""


class TrainingError(TrainyardError):
    """Training itself failed: divergence (NaN/inf loss), data changed since submit, unwritable artifacts."""


class Cancelled(TrainyardError):
    """Training stopped because a cancel was requested."""
