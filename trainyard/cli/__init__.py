"""The ``trainyard`` command line. Each group of commands lives in its own module.

Every command turns a :class:`~trainyard.errors.TrainyardError` into one clear message on stderr
and exit status 2 (``main`` below); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import click

from trainyard.errors import TrainyardError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except TrainyardError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trainyard")
def main() -> None:
    """Describe Keras models as data, queue training jobs, train them on your machines, watch them live."""


def _register() -> None:
    from trainyard.cli import (
        dashboard_cmds,
        jobs_cmds,
        predict_cmds,
        results_cmds,
        spec_cmds,
        sweep_cmds,
        worker_cmds,
    )

    for module in (spec_cmds, jobs_cmds, predict_cmds, worker_cmds, dashboard_cmds, sweep_cmds, results_cmds):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
