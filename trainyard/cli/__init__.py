"""The ``trainyard`` command line. Each group of commands lives in its own module.

Every command turns a :class:`~trainyard.errors.TrainyardError` into one clear message on stderr
and exit status 2 (``main`` below); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
import tempfile

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


def quiet_tensorflow() -> None:
    """Import TensorFlow (and let it find its devices) without its start-up chatter on the terminal.

    TensorFlow 2.21 prints info lines from C++ before its logging is set up, whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says. Commands that will import it anyway call this first: stderr goes to
    a temporary file meanwhile, and is replayed only if the import fails.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _register() -> None:
    from trainyard.cli import dashboard_cmds, jobs_cmds, spec_cmds, worker_cmds

    for module in (spec_cmds, jobs_cmds, worker_cmds, dashboard_cmds):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
